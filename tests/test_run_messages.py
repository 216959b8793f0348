"""What a run says about itself, at the edges: status counts only what the API said (a job no
poll has seen is not called queued), cancel's summary first with the ids kept short, a failure
reason said once, an unreachable API named in words, the submits on their way in progress."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest
from conftest import run_cli, sim_env, spawn_cli, write_manifest

from batch_runner.run import progress
from batch_runner.run.progress import Progress, Tally

pytestmark = pytest.mark.timeout(90)


def _status(out) -> dict:
    res = run_cli("status", out, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _wait(condition, proc, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended too early"
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def test_status_calls_no_job_queued_that_no_poll_saw_and_cancel_is_short(make_sim, tmp_path):
    # unlimited capacity: the simulator never queues a job, every job runs from its submit
    sim = make_sim("--latency", "60", "--capacity", "0", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "m.yaml", [f"job {i}" for i in range(6)])
    out = tmp_path / "run"
    proc = spawn_cli(
        "run", manifest, "--out", out, "--concurrency", "6", "--no-progress", env=sim_env(sim)
    )
    try:
        _wait(lambda: sim.stats()["submitted"] >= 6, proc)
        # every request_id on disk (the journal commits right after each answer)
        _wait(lambda: set(_status(out)["counts"]) <= {"queued", "running"}, proc)
        summary = _status(out)
        counts = summary["counts"]
        assert counts.get("queued", 0) + counts.get("running", 0) == 6
        # nothing waits in the simulator's queue: every `queued` job is one no poll has seen
        assert counts.get("queued", 0) == summary["not_polled"]
        human = run_cli("status", out).stdout.splitlines()[0]
        assert not re.search(r"\bqueued \d", human), human
        if summary["not_polled"]:
            assert f"submitted (not polled yet) {summary['not_polled']}" in human, human
    finally:
        proc.kill()
        proc.communicate(timeout=30)

    res = run_cli("cancel", out, env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("cancelled: 0, not cancellable: 6"), lines
    assert len(lines) == 2 and lines[1].count(", ") == 2, lines  # three ids, then how many more
    assert "… and 3 more (--json lists all)" in lines[1]


def test_a_generation_failure_says_so_once(make_sim, tmp_path):
    sim = make_sim("--fail-rate", "1", "--latency", "0.05:0.1", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "m.yaml", ["a fox"])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--retries", "0", "--json", env=sim_env(sim))
    assert res.returncode == 1, res.stderr
    (failure,) = json.loads(res.stdout)["failures"]
    assert failure["reason"] == "generation failed (simulated)"
    assert "generation failed: generation failed" not in res.stderr


def test_a_closed_port_is_called_unreachable_in_words(tmp_path):
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env |= {"RUNCOMFY_API_TOKEN": "tok", "BATCH_RUNNER_OUTAGE_SECONDS": "1"}
    manifest = write_manifest(tmp_path / "m.yaml", ["a fox", "an owl"])
    res = run_cli(
        "run", manifest, "--out", tmp_path / "run", "--api-base", f"http://127.0.0.1:{port}",
        "--no-progress", env=env,
    )  # fmt: skip
    assert res.returncode == 4, res.stderr
    assert "cannot connect to the API: connection refused" in res.stderr
    assert re.search(r"retries: API unreachable \(no connection\) ×\d+", res.stderr), res.stderr
    assert "dropped" not in res.stderr and "Errno" not in res.stderr
    assert "jobs: 2 (pending 2)" in res.stderr  # nothing marked failed


def test_progress_shows_the_submits_on_their_way(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    tally = Tally()
    Progress(tally, total=2, to_submit=2, enabled=True)  # no terminal: progress lines
    tally.count_sending(1)
    tally.count_sending(1)
    tally.count_sending(-1)
    tally.count_submitted()
    lines = capsys.readouterr().err.splitlines()
    assert lines[1].startswith("progress: 0 submitted (2 sending), 0/2 finished"), lines
    assert lines[-1].startswith("progress: 1 submitted (1 sending), 0/2 finished"), lines


def test_progress_bars_show_sending_before_the_first_answer(capsys):
    tally = Tally()
    shown = Progress(tally, total=3, to_submit=3, enabled=True, auto=True)
    bar = shown.bars["submitted"]
    for _ in range(3):
        tally.count_sending(1)
    assert "0/3" in str(bar) and "3 sending" in str(bar)
    for _ in range(3):
        tally.count_sending(-1)
        tally.count_submitted()
    assert "3/3" in str(bar) and "sending" not in str(bar)
    shown.close()
