"""Crash safety with real processes and real signals: kill -9, Ctrl-C, edits, locks, bad state."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import read_metadata, run_cli, sim_env, spawn_cli, write_manifest
from PIL import Image


def _wait_submitted(sim, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sim.stats()["submitted"] < n and time.monotonic() < deadline:
        time.sleep(0.02)


def _check_files(out: Path, n_jobs: int) -> list[dict]:
    lines = read_metadata(out)
    names = [line["file_name"] for line in lines]
    assert len(names) == len(set(names)) == n_jobs  # every file once, no duplicate line
    on_disk = sorted(
        p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()
    )
    assert on_disk == sorted(names)
    for line in lines:
        with Image.open(out / line["file_name"]) as img:
            img.verify()
    return lines


def _kill_loop(sim, manifest: Path, out: Path, extra: list[str], kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    env = sim_env(sim)
    for _ in range(kills):
        proc = spawn_cli(
            "run", manifest, "--out", out, "--concurrency", "8", "--no-progress", *extra, env=env
        )
        # kill while it submits: wait for its first new submission, then a random moment
        _wait_submitted(sim, sim.stats()["submitted"] + 1)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    res = run_cli("resume", out, "--json", "--no-progress", *extra, env=env, timeout=120)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def test_kill_9_loop_loses_nothing_and_counts_duplicates(make_sim, tmp_path):
    # a slow submit answer keeps POSTs in flight, so kills land between intent and answer
    sim = make_sim("--latency", "0.2:0.5", "--submit-delay", "0.15", "--image-scale", "0.02")
    prompts = [f"kill loop job {i}" for i in range(100)]
    manifest = write_manifest(tmp_path / "k.yaml", prompts)
    out = tmp_path / "run"
    summary = _kill_loop(sim, manifest, out, [], kills=5, seed=1)
    assert summary["counts"] == {"done": 100}, summary
    _check_files(out, 100)
    stats = sim.stats()
    duplicates = stats["submitted"] - stats["unique_bodies"]
    print(
        f"\nkill -9 loop: 100 jobs, 5 kills, submitted {stats['submitted']}, duplicates "
        f"{duplicates}, possible_duplicates reported {summary['possible_duplicates']}"
    )
    assert stats["unique_bodies"] == 100
    assert duplicates <= summary["possible_duplicates"]
    assert summary["possible_duplicates"] >= 1  # the kills did land mid-submit


def test_kill_9_loop_without_resubmitting_uncertain_has_no_duplicates(make_sim, tmp_path):
    sim = make_sim("--latency", "0.2:0.5", "--submit-delay", "0.15", "--image-scale", "0.02")
    prompts = [f"careful job {i}" for i in range(60)]
    manifest = write_manifest(tmp_path / "k.yaml", prompts)
    out = tmp_path / "run"
    summary = _kill_loop(sim, manifest, out, ["--no-resubmit-uncertain"], kills=4, seed=2)
    stats = sim.stats()
    print(
        f"\nkill -9 loop, --no-resubmit-uncertain: 60 jobs, 4 kills, counts {summary['counts']}, "
        f"submitted {stats['submitted']}, unique {stats['unique_bodies']}"
    )
    assert stats["submitted"] == stats["unique_bodies"]  # nothing ever sent twice
    assert summary["possible_duplicates"] == 0
    counts = summary["counts"]
    assert counts.get("done", 0) + counts.get("uncertain", 0) == 60
    assert counts.get("uncertain", 0) >= 1  # the kills did land mid-submit
    _check_files(out, counts.get("done", 0))


def test_sigint_once_drains_in_flight_and_submits_nothing_new(make_sim, tmp_path):
    sim = make_sim("--latency", "0.5:0.8", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "d.yaml", [f"drain job {i}" for i in range(40)])
    out = tmp_path / "run"
    proc = spawn_cli(
        "run", manifest, "--out", out, "--concurrency", "5", "--no-progress", env=sim_env(sim)
    )
    _wait_submitted(sim, 8)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # a POST already on the wire may still land
    at_signal = sim.stats()["submitted"]
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping" in err
    assert sim.stats()["submitted"] == at_signal
    counts = json.loads(run_cli("status", out, "--json").stdout)["counts"]
    assert set(counts) <= {"done", "pending"}  # every job in flight finished
    assert counts["done"] == at_signal

    sim.post("/_sim/config", {"latency": [0.05, 0.1]})  # the jobs left need not take as long
    res = run_cli("resume", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 40
    _check_files(out, 40)


def test_a_generation_failing_while_stopping_is_submitted_again_on_resume(make_sim, tmp_path):
    """It waits as pending with no current request: the resume sends it again (the failed
    attempt's id is history, never polled again), until --retries is used up."""
    sim = make_sim("--latency", "0.6", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "f.yaml", [f"doomed {i} [sim:fail]" for i in range(2)])
    out = tmp_path / "run"
    env = sim_env(sim)
    proc = spawn_cli("run", manifest, "--out", out, "--retries", "2", "--no-progress", env=env)
    _wait_submitted(sim, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    status = json.loads(run_cli("status", out, "--json").stdout)
    assert status["counts"] == {"pending": 2} and status["retries"] == {"generation_failed": 2}

    res = run_cli("resume", out, "--json", "--no-progress", env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    summary = json.loads(res.stdout)
    assert summary["counts"] == {"failed": 2}
    assert summary["retries"] == {"generation_failed": 4}
    assert sim.stats()["submitted"] == 6  # three attempts each, none polled twice
    ids = {job["request_id"] for job in sim.jobs()}
    assert {f["request_id"] for f in summary["failures"]} <= ids


def test_sigint_twice_exits_at_once_then_resume_completes(make_sim, tmp_path):
    sim = make_sim("--latency", "2:3", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "q.yaml", [f"quit job {i}" for i in range(12)])
    out = tmp_path / "run"
    proc = spawn_cli(
        "run", manifest, "--out", out, "--concurrency", "4", "--no-progress", env=sim_env(sim)
    )
    _wait_submitted(sim, 4)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 2.0  # did not wait for the 2-3 s jobs
    # the 8 not yet sent go at once, and quick: the resume waits only for the 4 at the API
    sim.post("/_sim/config", {"latency": [0.05, 0.1]})
    res = run_cli("resume", out, "--json", "--concurrency", "12", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 12
    _check_files(out, 12)


def _hanging_account_api() -> tuple[ThreadingHTTPServer, threading.Event]:
    """An account API on 127.0.0.1 that never answers the balance (until shut down)."""
    asked, release = threading.Event(), threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            asked.set()
            release.wait(60)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    server.release = release  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def test_ctrl_c_while_setting_up_is_never_lost(sim, tmp_path):
    """A Ctrl-C while the run still asks for the balance (before the workers start) stops it
    at once: nothing submitted, exit 130, and a resume then does every job."""
    server, asked = _hanging_account_api()
    account = f"http://127.0.0.1:{server.server_address[1]}"
    manifest = write_manifest(tmp_path / "s.yaml", [f"setup job {i}" for i in range(6)])
    out = tmp_path / "run"
    try:
        proc = spawn_cli(
            "run", manifest, "--out", out, "--account-base", account, "--no-progress",
            env=sim_env(sim),
        )  # fmt: skip
        assert asked.wait(30), "the balance was never asked"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert time.monotonic() - t0 < 10  # not after the balance call's time limit
        assert "Traceback" not in err and "stopping" in err
        assert sim.stats()["submitted"] == 0
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
    res = run_cli("resume", out, "--json", "--no-balance-check", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 6
    _check_files(out, 6)


def test_edited_manifest_submits_only_new_keys(sim, tmp_path):
    prompts = [f"edit job {i}" for i in range(6)]
    manifest = write_manifest(tmp_path / "e.yaml", prompts)
    out = tmp_path / "run"
    assert run_cli("run", manifest, "--out", out, env=sim_env(sim)).returncode == 0
    edited = prompts[:5] + ["edit job 5 (changed)", "new a", "new b", "new c"]
    write_manifest(manifest, edited)
    res = run_cli("run", manifest, "--out", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 10  # 6 + 3 added + 1 changed
    summary = json.loads(res.stdout)
    assert summary["not_in_manifest"] == 1 and summary["counts"] == {"done": 10}


def test_second_run_on_a_running_directory_exits_2(make_sim, tmp_path):
    # the second run starts (and asks the model catalogue) while the first is still going
    sim = make_sim("--latency", "3:3.5", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "l.yaml", [f"lock job {i}" for i in range(6)])
    out = tmp_path / "run"
    first = spawn_cli("run", manifest, "--out", out, "--no-progress", env=sim_env(sim))
    _wait_submitted(sim, 1)
    second = run_cli("run", manifest, "--out", out, env=sim_env(sim))
    assert second.returncode == 2
    assert f"already running (pid {first.pid})" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    res = run_cli("resume", out, env=sim_env(sim))  # the lock died with the process
    assert res.returncode == 0, res.stderr


def test_corrupt_and_future_state_files_exit_2(sim, tmp_path):
    manifest = write_manifest(tmp_path / "s.yaml", ["a fox"])
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "state.db").write_bytes(b"this is not sqlite" * 100)
    future = tmp_path / "future"
    future.mkdir()
    conn = sqlite3.connect(future / "state.db")
    conn.execute("PRAGMA user_version = 99")
    conn.execute("CREATE TABLE x (y)")
    conn.commit()
    conn.close()
    for out, needle in ((corrupt, "not"), (future, "newer")):
        for args in (["run", manifest, "--out", out], ["resume", out], ["status", out]):
            res = run_cli(*args, env=sim_env(sim))
            assert res.returncode == 2, (args, res.stderr)
            assert needle in res.stderr and "Traceback" not in res.stderr
    assert sim.stats()["requests"].get("submit", 0) == 0
    assert (corrupt / "state.db").read_bytes() == b"this is not sqlite" * 100


def test_read_only_run_directory_exits_2(sim, tmp_path):
    manifest = write_manifest(tmp_path / "s.yaml", ["a fox"])
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        res = run_cli("run", manifest, "--out", out, env=sim_env(sim))
    finally:
        out.chmod(0o755)
    # root ignores directory permissions; then the run simply works
    assert res.returncode in (0, 2) and "Traceback" not in res.stderr


def test_metadata_is_rebuilt_when_missing(sim, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", [f"meta job {i}" for i in range(5)])
    out = tmp_path / "run"
    assert run_cli("run", manifest, "--out", out, env=sim_env(sim)).returncode == 0
    (out / "metadata.jsonl").unlink()
    (out / "images" / sorted(p.name for p in (out / "images").iterdir())[0]).unlink()
    res = run_cli("run", manifest, "--out", out, env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    _check_files(out, 5)
    assert sim.stats()["submitted"] == 5


def _run_with_file_size_limit(sim, manifest: Path, out: Path, limit: int, *extra: str):
    """`batch-runner run` with RLIMIT_FSIZE set: writes past `limit` bytes fail (EFBIG), the
    way they fail on a full disk (ENOSPC)."""
    import resource
    import subprocess

    from conftest import CLI

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [CLI, "run", str(manifest), "--out", str(out), "--no-progress", *extra],
        env=sim_env(sim),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=small_files,
    )


def test_full_disk_stops_cleanly_and_resume_finishes(make_sim, tmp_path):
    """Image files that cannot be written stop the run; resume finishes it."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02", "--pad-bytes", "2000000")
    manifest = write_manifest(tmp_path / "f.yaml", [f"full disk job {i}" for i in range(4)])
    out = tmp_path / "run"
    res = _run_with_file_size_limit(sim, manifest, out, 1_000_000)
    assert res.returncode == 2, res.stderr
    assert "cannot write" in res.stderr and "Traceback" not in res.stderr
    assert not list((out / "images").rglob("*.part"))
    submitted = sim.stats()["submitted"]
    res = run_cli("resume", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == 4 and submitted <= 4
    _check_files(out, 4)


def test_state_file_that_cannot_grow_stops_cleanly_and_resume_finishes(make_sim, tmp_path):
    """The state file's write-ahead log stops growing mid-run: one message, then resume."""
    sim = make_sim("--image-scale", "0.02")
    n = 300
    manifest = write_manifest(tmp_path / "w.yaml", [f"state limit job {i}" for i in range(n)])
    out = tmp_path / "run"
    res = _run_with_file_size_limit(sim, manifest, out, 400_000, "--concurrency", "16")
    assert res.returncode == 2, res.stderr
    assert "state.db: cannot write the state file" in res.stderr
    assert "Traceback" not in res.stderr and "never retrieved" not in res.stderr
    res = run_cli("resume", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    _check_files(out, n)
