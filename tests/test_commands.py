"""status while a run goes, cancel, --rate, validate --max-jobs, python -m."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from conftest import run_cli, sim_env, spawn_cli, write_manifest


def _wait(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_status_is_readable_while_a_run_is_going(make_sim, tmp_path):
    sim = make_sim("--latency", "1:2", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "s.yaml", [f"status job {i}" for i in range(10)])
    out = tmp_path / "run"
    proc = spawn_cli("run", manifest, "--out", out, "--no-progress", env=sim_env(sim))
    _wait(lambda: sim.stats()["submitted"] >= 3)
    res = run_cli("status", out, "--json")
    assert res.returncode == 0, res.stderr
    live = json.loads(res.stdout)
    assert live["jobs"] == 10 and live["counts"].get("done", 0) < 10
    assert sum(live["counts"].get(s, 0) for s in ("submitting", "queued", "running")) >= 1
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(run_cli("status", out, "--json").stdout)["counts"] == {"done": 10}
    human = run_cli("status", out)
    assert human.returncode == 0 and "done 10" in human.stdout


def test_cancel_cancels_queued_jobs_and_names_the_rest(make_sim, tmp_path):
    sim = make_sim("--latency", "30", "--capacity", "1", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "c.yaml", [f"cancel job {i}" for i in range(4)])
    out = tmp_path / "run"
    proc = spawn_cli(
        "run", manifest, "--out", out, "--concurrency", "4", "--no-progress", env=sim_env(sim)
    )
    _wait(lambda: sim.stats()["submitted"] >= 4)
    time.sleep(0.3)  # the last request_id is committed right after its answer
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    res = run_cli("cancel", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert len(result["cancelled"]) == 3 and len(result["not_cancellable"]) == 1
    counts = json.loads(run_cli("status", out, "--json").stdout)["counts"]
    assert counts["cancelled"] == 3


def test_rate_limits_api_requests_per_second(make_sim, tmp_path):
    sim = make_sim("--image-scale", "0.01")
    manifest = write_manifest(tmp_path / "r.yaml", [f"rate job {i}" for i in range(15)])
    t0 = time.monotonic()
    res = run_cli(
        "run",
        manifest,
        "--out",
        tmp_path / "run",
        "--rate",
        "10",
        "--concurrency",
        "8",
        env=sim_env(sim),
    )
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    req = sim.stats()["requests"]
    api_calls = req.get("submit", 0) + req.get("result", 0) + req.get("status", 0)
    assert api_calls >= 30
    # at most `rate` per second after a burst of one second's worth
    assert wall >= (api_calls - 10) / 10


def test_validate_refuses_more_jobs_than_max_jobs(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("repeat: 50\njobs:\n  - a fox\n  - an owl\n")
    res = run_cli("validate", path, "--max-jobs", "20")
    assert res.returncode == 2 and "max-jobs" in res.stderr
    assert run_cli("validate", path, "--max-jobs", "200").returncode == 0


def test_run_refuses_more_new_submissions_than_max_jobs(sim, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", [f"job {i}" for i in range(5)])
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--max-jobs", "3", env=sim_env(sim))
    assert res.returncode == 2 and "max-jobs" in res.stderr
    assert sim.stats()["submitted"] == 0


def test_python_dash_m_and_help():
    res = subprocess.run(
        [sys.executable, "-m", "batch_runner", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0 and "batch-runner" in res.stdout
    for command in (
        "run",
        "resume",
        "status",
        "cancel",
        "validate",
        "simulate",
        "report",
        "export",
    ):
        res = run_cli(command, "--help")
        assert res.returncode == 0 and "usage" in res.stdout.lower(), command


UNDOCUMENTED = ("--help", "--debug", "--host", "--port")  # generic, shown in --help


def test_readme_documents_every_flag():
    from pathlib import Path

    from batch_runner.cli.main import build_parser

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    missing = []
    for name, sub in subparsers.items():
        assert f"batch-runner {name}" in readme or f"`{name}`" in readme, name
        for action in sub._actions:
            for flag in action.option_strings:
                skip = not flag.startswith("--") or flag in UNDOCUMENTED
                if not skip and flag not in readme:
                    missing.append(f"{name} {flag}")
    assert not missing, f"flags not in README.md: {missing}"
