"""The run directory remembers its budget and its other options (CONTRACT §2 release 3, §6):
a later `run MANIFEST` or `resume` without the flag keeps the last value given, `--no-max-cost`
drops the budget, and the forecast counts what is already spent. Through the command line,
against the simulator over sockets, with exact prices."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import SIM_TOKEN, run_cli, sim_env, spawn_cli

from batch_runner.store.state import StateStore

pytestmark = pytest.mark.timeout(120)

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
UNPRICED = "blackforestlabs/flux-2-klein/4b/text-to-image"  # no price in the bundled catalogue


def mugs(tmp_path: Path, n: int = 50, name: str = "mugs.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"a mug number {i}\n" for i in range(n)), encoding="utf-8")
    return path


def priced_sim(make_sim, price: float = 0.04, *args: str):
    return make_sim(
        "--latency", "0.02:0.06", "--image-scale", "0.02", "--price", f"{SEEDREAM}={price}", *args
    )


def cli(*args, env) -> tuple[int, dict, str]:
    res = run_cli(*args, "--json", "--no-progress", env=env)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def remembered(run_dir: Path) -> dict:
    store = StateStore.open(run_dir, readonly=True)
    try:
        return store.get_meta("settings", {})
    finally:
        store.close()


def budget_reasons(run_dir: Path) -> set[tuple[str, str | None]]:
    store = StateStore.open(run_dir, readonly=True)
    try:
        return {(j.state.value, j.reason) for j in store.jobs() if j.state.value == "pending"}
    finally:
        store.close()


def test_the_reported_sequence_keeps_the_last_budget_and_forecasts_what_is_left(make_sim, tmp_path):
    sim = priced_sim(make_sim, 0.04)
    env, out, manifest = sim_env(sim), tmp_path / "R", mugs(tmp_path)

    code, summary, err = cli("run", manifest, "--out", out, "--max-cost", "0.5", env=env)
    assert code == 1 and summary["counts"] == {"done": 12, "pending": 38}
    assert "--max-cost $0.50: about 12 of 50 jobs fit ($0.48)" in err

    # the same manifest again without the flag: the budget is remembered, nothing more is sent
    code, summary, err = cli("run", manifest, "--out", out, env=env)
    stats = sim.stats()
    assert code == 1, err
    assert stats["submitted"] == 12 and stats["charged_usd"] <= 0.5 + 1e-9
    assert summary["counts"] == {"done": 12, "pending": 38}
    assert summary["cost"]["left_by_budget"] == {"jobs": 38, "estimated_usd": 1.52}
    assert budget_reasons(out) == {("pending", "budget")}
    assert "about 0 of 38 jobs fit" in err

    # a larger budget: the forecast counts the $0.48 spent, and exactly that many are sent
    code, summary, err = cli("resume", out, "--max-cost", "0.8", env=env)
    assert code == 1, err
    assert "estimated cost of the 38 jobs left to send: $1.52" in err
    assert "--max-cost $0.80, $0.48 of it already spent: about 8 of 38 jobs fit ($0.32)" in err
    stats = sim.stats()
    assert stats["submitted"] == 12 + 8 and stats["charged_usd"] <= 0.8 + 1e-9
    assert summary["counts"] == {"done": 20, "pending": 30}

    # a plain resume (and a plain run) keeps the larger budget, not the first one
    for again in (("resume", out), ("run", manifest, "--out", out)):
        code, summary, err = cli(*again, env=env)
        assert code == 1, err
        assert "--max-cost $0.80, $0.80 of it already spent: about 0 of 30 jobs fit" in err
        assert sim.stats()["submitted"] == 20 and summary["counts"]["pending"] == 30
    assert remembered(out)["max_cost"] == 0.8

    # --no-max-cost drops it, and a later plain run does not bring it back
    code, summary, _ = cli("resume", out, "--no-max-cost", env=env)
    assert code == 0 and summary["counts"] == {"done": 50}
    assert "left_by_budget" not in summary["cost"]
    assert remembered(out)["max_cost"] is None
    assert sim.stats()["submitted"] == 50 and sim.stats()["charged_usd"] == pytest.approx(2.0)
    more = mugs(tmp_path, 52)  # two new rows: sent without a budget
    code, summary, err = cli("run", more, "--out", out, env=env)
    assert code == 0 and summary["counts"] == {"done": 52}, err
    assert "--max-cost" not in err


def test_a_manifest_budget_run_again_unchanged_does_not_undo_a_later_flag(make_sim, tmp_path):
    sim = priced_sim(make_sim, 0.05)
    env, out = sim_env(sim), tmp_path / "run"
    manifest = tmp_path / "m.yaml"
    jobs = "".join(f"  - job {i}\n" for i in range(20))
    manifest.write_text(f"options: {{max_cost: 0.2}}\njobs:\n{jobs}", encoding="utf-8")
    code, summary, _ = cli("run", manifest, "--out", out, env=env)
    assert code == 1 and summary["counts"]["done"] == 4
    code, summary, _ = cli("resume", out, "--max-cost", "0.4", env=env)
    assert code == 1 and summary["counts"]["done"] == 8
    # the manifest's max_cost: 0.2 was given before the flag: the flag's 0.4 still holds
    code, summary, err = cli("run", manifest, "--out", out, env=env)
    assert code == 1 and "--max-cost $0.40" in err and summary["counts"]["done"] == 8
    # an edited manifest budget is given anew
    manifest.write_text(f"options: {{max_cost: 0.6}}\njobs:\n{jobs}", encoding="utf-8")
    code, summary, err = cli("run", manifest, "--out", out, env=env)
    assert code == 1 and "--max-cost $0.60, $0.40 of it already spent" in err
    assert summary["counts"]["done"] == 12 and sim.stats()["charged_usd"] <= 0.6 + 1e-9


def test_options_given_once_are_remembered_by_run_and_resume(make_sim, tmp_path):
    sim = priced_sim(make_sim, 0.03)
    env, out = sim_env(sim), tmp_path / "run"
    flags = ("--concurrency", "3", "--retries", "0", "--job-timeout", "100", "--max-jobs", "10")
    code, _, err = cli("run", mugs(tmp_path, 10), "--out", out, *flags, env=env)
    assert code == 0, err
    code, _, err = cli("run", mugs(tmp_path, 10), "--out", out, env=env)
    assert code == 0, err
    kept = remembered(out)
    assert (kept["concurrency"], kept["retries"], kept["job_timeout"]) == (3, 0, 100.0)
    # the remembered --max-jobs 10 guards a later run of a longer manifest
    res = run_cli("run", mugs(tmp_path, 15), "--out", out, "--no-progress", env=env)
    assert res.returncode == 2 and "more than the limit of 10" in res.stderr, res.stderr
    assert sim.stats()["submitted"] == 10
    code, summary, err = cli("run", mugs(tmp_path, 15), "--out", out, "--max-jobs", "20", env=env)
    assert code == 0 and summary["counts"] == {"done": 15}, err
    assert remembered(out)["max_jobs"] == 20 and remembered(out)["concurrency"] == 3


def test_no_balance_check_is_remembered_until_balance_check(make_sim, tmp_path):
    sim = priced_sim(make_sim, 0.03)
    env, out = sim_env(sim), tmp_path / "run"

    def balance_reads() -> int:
        return sim.stats()["requests"].get("balance", 0)

    args = ("--out", out, "--max-cost", "0.09", "--no-balance-check")
    code, _, _ = cli("run", mugs(tmp_path, 10), *args, env=env)
    assert code == 1 and balance_reads() == 0
    code, summary, _ = cli("resume", out, "--max-cost", "0.15", env=env)
    assert code == 1 and summary["counts"]["done"] == 5 and balance_reads() == 0
    code, summary, _ = cli("resume", out, "--max-cost", "0.21", "--balance-check", env=env)
    assert code == 1 and summary["counts"]["done"] == 7 and balance_reads() == 1
    assert remembered(out)["balance_check"] is True


def test_a_balance_is_compared_with_what_is_left_of_the_budget(make_sim, tmp_path):
    sim = priced_sim(make_sim, 0.03, "--balance", "0.2")
    env, out = sim_env(sim), tmp_path / "run"
    code, _, _ = cli("run", mugs(tmp_path, 20), "--out", out, "--max-cost", "0.15", env=env)
    assert code == 1 and sim.stats()["submitted"] == 5  # balance 0.2 covers the 0.15
    # $0.15 spent, $0.05 of balance left: a budget of 0.3 leaves $0.15 to spend, too much
    code, summary, err = cli("resume", out, "--max-cost", "0.3", env=env)
    assert code == 3 and sim.stats()["submitted"] == 5
    assert "balance $0.05" in err and "--max-cost $0.30 ($0.15 of it left)" in err
    # with $0.18 of budget: $0.03 left to spend, which the balance covers
    code, summary, err = cli("resume", out, "--max-cost", "0.18", env=env)
    assert code == 1 and sim.stats()["submitted"] == 6, err


def test_shards_keep_their_share_of_a_total_budget(make_sim, tmp_path):
    sim = priced_sim(make_sim, 0.05)
    out, manifest = tmp_path / "run", mugs(tmp_path, 20)
    env = sim_env(sim, JOB_COMPLETION_INDEX="0")
    shard = out / "shard-0-of-2"
    sharded = ("run", manifest, "--out", out, "--shards", "2")
    code, summary, err = cli(*sharded, "--max-cost-total", "0.5", env=env)
    assert code == 1 and "budget: $0.25 for this shard" in err
    first = summary["counts"]["done"]
    assert first == 5 and sim.stats()["charged_usd"] <= 0.25 + 1e-9
    # a later run of the shard without the flag keeps its share
    code, summary, _ = cli(*sharded, env=env)
    assert code == 1 and summary["counts"]["done"] == first
    assert remembered(shard)["max_cost"] == 0.25
    # a total given again splits it again
    code, summary, err = cli(*sharded, "--max-cost-total", "4", env=env)
    assert code == 0 and "budget: $2 for this shard" in err
    assert sim.stats()["charged_usd"] == pytest.approx(0.05 * summary["jobs"])
    res = run_cli(*sharded, "--no-max-cost", "--max-cost-total", "1", env=env)
    assert res.returncode == 2 and "--no-max-cost or --max-cost-total" in res.stderr


def test_an_unknown_price_never_fits_and_the_summary_says_so(make_sim, tmp_path):
    sim = priced_sim(make_sim)
    env, out = sim_env(sim), tmp_path / "run"
    manifest = tmp_path / "u.yaml"
    manifest.write_text(f"model: {UNPRICED}\njobs:\n  - a\n", encoding="utf-8")
    args = ("--out", out, "--offline", "--max-cost", "1")  # offline: the bundled entry, no price
    code, summary, err = cli("run", manifest, *args, env=env)
    assert code == 1 and summary["cost"]["left_by_budget"] == {"jobs": 1, "estimated_usd": None}
    assert "estimated cost of 1 job: unknown" in err
    assert "1 job without a known price never fits a budget" in err
    assert "left pending by --max-cost: 1 job (" in err and "--no-max-cost" in err
    assert "$0.00" not in err.split("jobs:")[0]  # an unknown price is never shown as 0
    assert sim.stats()["submitted"] == 0
    code, summary, _ = cli("resume", out, "--no-max-cost", env=env)
    assert code == 0 and summary["counts"] == {"done": 1}


def test_after_a_kill_the_estimate_says_which_jobs_it_counts(make_sim, tmp_path):
    sim = make_sim("--latency", "0.02:0.06", "--image-scale", "0.02", "--price", f"{SEEDREAM}=0.04")
    # a job of the test's own holds the simulator's only slot: the run's first two jobs wait in
    # its queue, at the API, until the test lets them through (however slow the machine is)
    sim.post("/_sim/config", {"capacity": 1})
    sim.post(f"/v1/models/{SEEDREAM}", {"prompt": "a blocker [sim:latency=60]"}, token=SIM_TOKEN)
    env, out, manifest = sim_env(sim), tmp_path / "run", mugs(tmp_path, 6)
    proc = spawn_cli("run", manifest, "--out", out, "--concurrency", "2", "--no-progress", env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # both jobs at the API, their request_ids committed
        res = run_cli("status", out, "--json")
        if res.returncode == 0 and json.loads(res.stdout)["counts"].get("queued") == 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    sim.post("/_sim/config", {"capacity": 0})  # unlimited: the two waiting start now
    code, summary, err = cli("resume", out, env=env)
    assert code == 0 and summary["counts"] == {"done": 6}, err
    assert "estimated cost of the 4 jobs left to send: $0.16 (besides 2 jobs already at" in err
    assert sim.stats()["submitted"] == 6 + 1  # the run's and the blocker


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--max-cost", "nan"), "--max-cost must be a finite number of US dollars, got nan"),
        (("--max-cost", "inf"), "--max-cost must be a finite number of US dollars, got inf"),
        (("--max-cost", "-1"), "--max-cost must be 0 or more US dollars, got -1"),
        (("--rate", "nan"), "--rate must be a finite number of requests per second"),
        (("--job-timeout", "inf"), "--job-timeout must be a finite number of seconds"),
        (("--max-inline-mb", "nan"), "--max-inline-mb must be a finite number of megabytes"),
        (("--max-cost-total", "nan", "--shard", "0/2"), "--max-cost-total must be a finite"),
        (("--max-cost", "1", "--no-max-cost"), "give --max-cost USD or --no-max-cost, not both"),
    ],
)
def test_bad_numbers_name_the_flag_and_say_what_is_wrong(tmp_path, flags, message):
    out = tmp_path / "run"
    res = run_cli("run", mugs(tmp_path, 2), "--out", out, "--simulate", "--no-progress", *flags)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "option 'max_cost'" not in res.stderr and "Traceback" not in res.stderr
    assert not (out / "state.db").exists()
