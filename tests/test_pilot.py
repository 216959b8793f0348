"""`run`/`validate --pilot N` (CONTRACT §2 release 3): N of the new jobs covering every model and
every sweep value when N allows, the same N picking the same jobs; the rest stay pending and a
later run without --pilot sends only them. Through the command line against the simulator over
sockets (its `submitted` count), and the Python API with a dynamic prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SIM_TOKEN, run_cli, sim_env

import batch_runner
from batch_runner.store.state import StateStore

pytestmark = pytest.mark.timeout(120)

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
FLUX = "blackforestlabs/flux-2-klein/4b/text-to-image"
SWEEP = (
    "sweep:\n"
    f"  - model: [{SEEDREAM}, {FLUX}]\n"
    "    prompt: 'A {red|green|blue} __animal__ in {style}'\n"
    "    vars: {style: [ukiyo-e, bauhaus, watercolor]}\n"
)


def manifest(tmp_path: Path, text: str = SWEEP) -> Path:
    (tmp_path / "wildcards").mkdir(exist_ok=True)
    (tmp_path / "wildcards" / "animal.txt").write_text("cat\ndog\n")
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def cli(*args, env=None) -> tuple[int, dict, str]:
    res = run_cli(*args, "--json", env=env)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def fast_sim(make_sim):
    return make_sim("--latency", "0.01:0.03", "--image-scale", "0.02")


def states(run_dir: Path) -> dict[int, str]:
    store = StateStore.open(run_dir, readonly=True)
    try:
        return {job.index: job.state.value for job in store.jobs(with_files=False)}
    finally:
        store.close()


def test_validate_pilot_covers_every_model_and_value_and_is_stable(tmp_path):
    path = manifest(tmp_path)
    code, out, err = cli("validate", path, "--offline", "--pilot", "3")
    assert code == 0, err
    pilot = out["pilot"]
    assert out["jobs"] == 2 * 3 * 2 * 3 and pilot["jobs"] == 3 and len(pilot["picked"]) == 3
    # 3 jobs can cover 2 models, 3 colours, 2 animals and 3 styles: the table says each is
    table = "\n".join(pilot["table"])
    assert "pilot: 3 jobs of 36 new (the other 33 stay pending)" in table
    for axis, n in (("model", 2), ("prompt_1", 3), ("animal", 2), ("style", 3)):
        assert any(axis in line and f"{n}/{n} covered" in line for line in pilot["table"]), table
    assert cli("validate", path, "--offline", "--pilot", "3")[1]["pilot"] == pilot
    shown = run_cli("validate", path, "--offline", "--pilot", "3").stdout
    assert "3/3 covered: red, green, blue" in shown
    # too small an N covers what it can; a larger one adds jobs, none twice
    assert cli("validate", path, "--offline", "--pilot", "1")[1]["pilot"]["jobs"] == 1
    more = cli("validate", path, "--offline", "--pilot", "40")[1]["pilot"]
    assert more["picked"] == list(range(1, 37))


def test_pilot_must_be_at_least_one(tmp_path):
    res = run_cli("validate", manifest(tmp_path), "--offline", "--pilot", "0")
    assert res.returncode == 2 and "--pilot must be at least 1" in res.stderr


def test_a_pilot_run_sends_n_and_the_next_run_the_rest_once(make_sim, tmp_path):
    sim = fast_sim(make_sim)
    env, out, path = sim_env(sim), tmp_path / "R", manifest(tmp_path)
    _, validated, _ = cli("validate", path, "--offline", "--pilot", "4")
    code, summary, err = cli("run", path, "--out", out, "--pilot", "4", "--no-progress", env=env)
    assert code == 0, err
    assert sim.stats()["submitted"] == 4
    assert summary["counts"] == {"done": 4, "pending": 32} and summary["pilot_pending"] == 32
    assert "pilot: 4 jobs of 36 new" in err and "without --pilot" in err
    done = sorted(i for i, s in states(out).items() if s == "done")
    assert done == validated["pilot"]["picked"]  # validate showed the very jobs run sent
    assert "estimated cost of the 4 jobs" in err  # the estimate is the pilot's
    code, summary, err = cli("run", path, "--out", out, "--no-progress", env=env)
    assert code == 0, err
    assert sim.stats()["submitted"] == 36 and summary["counts"] == {"done": 36}
    assert summary["possible_duplicates"] == 0
    code, summary, _ = cli("run", path, "--out", out, "--no-progress", env=env)
    assert code == 0 and sim.stats()["submitted"] == 36  # nothing new


def test_a_second_pilot_takes_new_jobs_only(make_sim, tmp_path):
    sim = fast_sim(make_sim)
    env, out, path = sim_env(sim), tmp_path / "R", manifest(tmp_path)
    cli("run", path, "--out", out, "--pilot", "2", "--no-progress", env=env)
    code, summary, err = cli("run", path, "--out", out, "--pilot", "3", "--no-progress", env=env)
    assert code == 0, err
    assert sim.stats()["submitted"] == 5 and summary["counts"] == {"done": 5, "pending": 31}
    assert "pilot: 3 jobs of 34 new" in err


def test_a_sampled_sweep_run_again_submits_nothing_new(make_sim, tmp_path):
    sim = fast_sim(make_sim)
    env, out = sim_env(sim), tmp_path / "R"
    path = manifest(tmp_path, SWEEP + "    sample: 5\n    seed: 11\n")
    code, summary, err = cli("run", path, "--out", out, "--no-progress", env=env)
    assert code == 0 and summary["counts"] == {"done": 5}, err
    cli("run", path, "--out", out, "--no-progress", env=env)
    assert sim.stats()["submitted"] == 5
    # a larger sample keeps the five and adds three
    path.write_text(SWEEP + "    sample: 8\n    seed: 11\n")
    code, summary, err = cli("run", path, "--out", out, "--no-progress", env=env)
    assert code == 0 and summary["counts"] == {"done": 8}, err
    assert sim.stats()["submitted"] == 8 and "3 new jobs" in err


def test_the_python_api_takes_a_dynamic_prompt_and_a_pilot(make_sim, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", SIM_TOKEN)
    api = fast_sim(make_sim).base_url
    jobs = ["A {red|green} fox", {"prompt": "an {owl|heron}", "meta": {"split": "train"}}]
    result = batch_runner.run(jobs, out=tmp_path / "run", api_base=api, pilot=3)
    assert result.exit_code == 0 and result.summary["counts"] == {"done": 3, "pending": 1}
    result = batch_runner.run(jobs, out=tmp_path / "run", api_base=api)
    assert result.exit_code == 0 and result.summary["counts"] == {"done": 4}
    lines = [
        json.loads(s) for s in (tmp_path / "run" / "metadata.jsonl").read_text().split("\n") if s
    ]
    assert sorted(line["prompt"] for line in lines) == [
        "A green fox", "A red fox", "an heron", "an owl",
    ]  # fmt: skip
