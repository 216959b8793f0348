"""Money end to end against the simulator over sockets (CONTRACT §6): the estimate, --max-cost,
the balance check, 402 mid-run, actual costs in status, metadata and the report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, run_json, sim_env
from conftest import status_json as status
from test_migrations import _v1_file

from batch_runner.store.state import STATE_FILE, StateStore

pytestmark = pytest.mark.timeout(90)

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
VIDEO = "wan-ai/wan-3.0/text-to-video"  # per second; duration default 5


def manifest(tmp_path: Path, n: int, *, model: str = SEEDREAM, extra: str = "") -> Path:
    path = tmp_path / "m.yaml"
    jobs = "\n".join(f"  - prompt: job {i}{extra}" for i in range(n))
    path.write_text(f"model: {model}\njobs:\n{jobs}\n", encoding="utf-8")
    return path


def money_sim(make_sim, *args: str):
    return make_sim("--latency", "0.05:0.15", "--image-scale", "0.02", *args)


def test_the_estimate_is_jobs_times_price_per_output_and_per_second(make_sim, tmp_path):
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.03", "--price", f"{VIDEO}=0.1")
    env = sim_env(sim)
    images = manifest(tmp_path, 7)
    res = run_cli("validate", images, "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["estimated_cost_usd"] == pytest.approx(7 * 0.03)
    assert out["models"] == {SEEDREAM: 7}
    assert out["cost"]["models"][SEEDREAM]["price_unit"] == "output"
    video = tmp_path / "v.yaml"
    video.write_text(
        f"model: {VIDEO}\njobs:\n  - {{prompt: a, duration: 4}}\n  - {{prompt: b, duration: 4}}\n"
        "  - c\n",
        encoding="utf-8",
    )
    res = run_cli("validate", video, "--json", "--max-cost", "0.85", env=env)
    out = json.loads(res.stdout)
    assert out["estimated_cost_usd"] == pytest.approx(2 * 4 * 0.1 + 5 * 0.1)  # default 5 s
    assert out["max_cost"] == {"usd": 0.85, "jobs_fit": 2, "cost_usd": 0.8}
    human = run_cli("validate", video, "--max-cost", "0.85", env=env).stdout
    assert "estimated cost of 3 jobs: $1.30" in human and "2 of 3 jobs fit" in human
    assert "per second" in human  # the pricing note
    video.write_text(video.read_text() + "options: {max_cost: 0.45}\n", encoding="utf-8")
    out = json.loads(run_cli("validate", video, "--json", env=env).stdout)
    assert out["max_cost"]["jobs_fit"] == 1  # the budget from the manifest's options
    assert sim.stats()["submitted"] == 0


def test_without_a_price_the_estimate_says_unknown(tmp_path):
    res = run_cli("validate", manifest(tmp_path, 3), "--json")  # no token: bundled, no price
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["estimated_cost_usd"] is None
    assert out["cost"]["unknown_jobs"] == 3
    human = run_cli("validate", manifest(tmp_path, 3)).stdout
    assert "unknown" in human


def test_a_budget_below_the_first_job_sends_nothing(make_sim, tmp_path):
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.03")
    out = tmp_path / "run"
    code, summary, err = run_json(
        "run", manifest(tmp_path, 4), "--out", out, "--max-cost", "0.02", env=sim_env(sim)
    )
    assert code == 1 and summary["counts"] == {"pending": 4}
    assert summary["cost"]["left_by_budget"] == {"jobs": 4, "estimated_usd": 0.12}
    assert "left pending by --max-cost: 4 jobs" in err and "$0.12" in err
    assert sim.stats()["submitted"] == 0
    store = StateStore.open(out, readonly=True)
    try:
        assert {(j.state.value, j.reason) for j in store.jobs()} == {("pending", "budget")}
    finally:
        store.close()


def test_a_budget_for_half_the_jobs_stops_there_and_a_larger_one_finishes(make_sim, tmp_path):
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.05")
    env, out, path = sim_env(sim), tmp_path / "run", manifest(tmp_path, 20)
    args = ("--out", out, "--concurrency", "16")
    code, summary, err = run_json("run", path, *args, "--max-cost", "0.5", env=env)
    stats = sim.stats()
    assert code == 1 and stats["charged_usd"] <= 0.5 + 1e-9
    assert summary["counts"] == {"done": 10, "pending": 10}
    assert summary["cost"]["spent_usd"] == pytest.approx(stats["charged_usd"], abs=0.005)
    assert summary["cost"]["left_by_budget"]["jobs"] == 10
    assert "about 10 of 20 jobs fit" in err
    code, summary, _ = run_json("resume", out, "--max-cost", "5", env=env)
    stats = sim.stats()
    assert code == 0 and summary["counts"] == {"done": 20}
    assert stats["submitted"] == 20  # nothing paid twice
    cost = status(out)["cost"]
    assert cost["spent_usd"] == pytest.approx(stats["charged_usd"], abs=0.005)  # to the cent
    assert stats["charged_usd"] == pytest.approx(20 * 0.05)
    assert cost["estimated_usd"] == pytest.approx(cost["spent_usd"])
    assert cost["possible_extra_usd"] == 0
    assert status(out)["models"] == {SEEDREAM: {"jobs": 20, "done": 20}}
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and {x["job_cost_usd"] for x in lines} == {0.05}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "$1.00" in page and "$0.05" in page


def test_possible_duplicates_count_in_the_budget(make_sim, tmp_path):
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.1", "--lost-submit-rate", "0.5")
    sim.post("/_sim/config", {"seed": 3})
    out = tmp_path / "run"
    args = ("--out", out, "--concurrency", "8", "--max-cost", "0.6")
    code, summary, _ = run_json("run", manifest(tmp_path, 12), *args, env=sim_env(sim))
    stats = sim.stats()
    assert code == 1
    assert stats["faults"].get("lost_submit", 0) >= 1, stats
    # every job the simulator created (lost answers included) fits the budget
    assert stats["charged_usd"] <= 0.6 + 1e-9, stats
    cost = summary["cost"]
    assert cost["spent_usd"] + cost["possible_extra_usd"] <= 0.6 + 1e-9
    done = summary["counts"].get("done", 0)
    assert done + summary["possible_duplicates"] + summary["counts"].get("uncertain", 0) <= 6


def test_a_balance_below_the_estimate_stops_before_anything_is_sent(make_sim, tmp_path):
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.03", "--balance", "0.1")
    out, path = tmp_path / "run", manifest(tmp_path, 10)
    code, summary, err = run_json("run", path, "--out", out, env=sim_env(sim))
    assert code == 3 and sim.stats()["submitted"] == 0
    assert "balance $0.10" in err and "$0.30" in err and "--no-balance-check" in err
    assert summary["counts"] == {"pending": 10}
    # the smaller of the estimate and the budget is what must be covered
    code, _, _ = run_json("run", path, "--out", out, "--max-cost", "0.09", env=sim_env(sim))
    assert code == 1 and sim.stats()["submitted"] == 3


def test_no_balance_check_sends_and_a_402_mid_run_stops_then_resume_completes(make_sim, tmp_path):
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.03", "--balance", "0.1")
    env, out = sim_env(sim), tmp_path / "run"
    args = ("--out", out, "--concurrency", "1", "--no-balance-check")
    code, summary, err = run_json("run", manifest(tmp_path, 6), *args, env=env)
    assert code == 3, err
    assert "insufficient credits" in summary["error"]
    assert summary["counts"] == {"done": 3, "pending": 3}  # nothing lost
    sim.post("/_sim/config", {"balance": 10})  # a top-up
    code, summary, _ = run_json("resume", out, env=env)
    stats = sim.stats()
    assert code == 0 and summary["counts"] == {"done": 6}
    assert stats["submitted"] == 6 and stats["charged_usd"] == pytest.approx(0.18)
    assert status(out)["cost"]["spent_usd"] == pytest.approx(0.18)


def test_the_in_process_simulator_prices_the_run(tmp_path):
    out = tmp_path / "run"
    code, summary, err = run_json("run", manifest(tmp_path, 2), "--out", out, "--simulate")
    assert code == 0 and "estimated cost of 2 jobs: $" in err
    assert summary["cost"]["spent_usd"] > 0
    assert summary["cost"]["spent_usd"] == pytest.approx(summary["cost"]["estimated_usd"])


def test_a_run_reads_each_models_catalogue_entry_once(make_sim, tmp_path):
    nano = "google/nano-banana-2-lite/text-to-image"
    sim = money_sim(make_sim, "--price", f"{SEEDREAM}=0.03", "--price", f"{nano}=0.05")
    cache = tmp_path / "not-a-folder"
    cache.write_text("")  # no cache can be kept: only this run remembers what it read
    env = sim_env(sim, XDG_CACHE_HOME=str(cache))
    path = tmp_path / "m.yaml"
    jobs = f"jobs:\n  - a\n  - b\n  - {{prompt: c, model: {nano}}}\n"
    path.write_text(jobs + "  - {prompt: d, model: nobody/knows/this}\n", encoding="utf-8")

    def catalogue_reads() -> int:
        return sim.stats()["requests"].get("catalog", 0)

    # a model the live catalogue does not list: refused at its line, nothing sent
    res = run_cli("validate", path, "--json", env=env)
    assert res.returncode == 2 and f"{path}:5: model nobody/knows/this: unknown model" in res.stderr
    # one GET /v1/models/{model} per model, and one listing to suggest the nearest ids
    assert catalogue_reads() == 4
    path.write_text(jobs, encoding="utf-8")
    res = run_cli("validate", path, "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["estimated_cost_usd"] == pytest.approx(0.11) and out["unknown_models"] == []
    assert out["cost"]["models"][SEEDREAM]["estimated_cost_usd"] == pytest.approx(0.06)
    assert out["cost"]["models"][nano]["base_price_usd"] == 0.05
    assert catalogue_reads() == 6
    code, summary, err = run_json("run", path, "--out", tmp_path / "run", env=env)
    assert code == 0 and summary["counts"] == {"done": 3}
    assert "estimated cost of 3 jobs: $0.11" in err
    assert summary["cost"]["spent_usd"] == pytest.approx(0.11)
    assert catalogue_reads() == 8  # the run asked once per model too, not twice
    assert sim.stats()["requests"]["balance"] == 1 and sim.stats()["submitted"] == 3


def test_an_old_state_file_opens_and_gains_the_cost_columns(tmp_path):
    _v1_file(tmp_path)
    before = status(tmp_path)  # read-only, as it is
    assert before["cost"]["spent_usd"] == 0 and before["cost"]["estimated_usd"] is None
    StateStore.open(tmp_path).close()  # opened for writing: migrated
    with sqlite3.connect(tmp_path / STATE_FILE) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)")}
        assert "cost_usd" in columns
        assert "estimate_usd" in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert status(tmp_path)["counts"] == before["counts"]
