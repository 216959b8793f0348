"""Never pay twice, never lose a job to an outage (issue 13).

Real processes and sockets: the console script against a closed port, a base ending in /v1,
an HTML 502 server, and the simulator subprocess with its fault options.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from conftest import CLI, run_cli, sim_env, write_manifest
from fastretry import run_fast

OUTAGE_ENV = "BATCH_RUNNER_OUTAGE_SECONDS"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(out: Path) -> dict:
    res = run_cli("status", out, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _manifest(tmp_path: Path, n: int, name: str = "m.yaml") -> Path:
    return write_manifest(tmp_path / name, [f"prompt {i}" for i in range(n)])


@pytest.mark.timeout(60)
def test_closed_port_exits_4_then_resume_completes(make_sim, tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env |= {"RUNCOMFY_API_TOKEN": "x", OUTAGE_ENV: "3"}
    base = f"http://127.0.0.1:{_closed_port()}"
    res = run_fast("run", _manifest(tmp_path, 5), "--out", out, "--api-base", base, env=env)
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr
    stopped = [line for line in res.stderr.splitlines() if "could not be reached" in line]
    assert stopped and "resume" in stopped[-1] and "nothing was marked failed" in stopped[-1]
    counts = _status(out)["counts"]
    assert counts.get("failed", 0) == 0 and counts.get("pending") == 5

    sim = make_sim("--latency", "0.05:0.1", "--image-scale", "0.02")
    res = run_cli("resume", out, "--api-base", sim.base_url, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"done": 5}
    assert sim.stats()["submitted"] == 5


def test_v1_base_is_a_usage_error_before_any_submit(make_sim, tmp_path):
    sim = make_sim()
    out = tmp_path / "run"
    res = run_cli(
        "run", _manifest(tmp_path, 3), "--out", out, "--api-base", sim.base_url + "/v1/",
        env=sim_env(sim),
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "before /v1" in res.stderr and "Traceback" not in res.stderr
    assert sim.stats()["submitted"] == 0


async def test_html_502_server_bounds_submits_and_keeps_messages_short(serve, tmp_path):
    posts: list[bytes] = []  # one body per POST: the job it was for

    async def gateway(request: web.Request) -> web.Response:
        if request.method == "POST":
            posts.append(await request.read())
        page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n" + "x" * 2000
        return web.Response(status=502, text=page + "\n</body></html>", content_type="text/html")

    base, _ = await serve(gateway)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env["RUNCOMFY_API_TOKEN"] = "tok-502"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FAST_MAIN, "run", str(_manifest(tmp_path, 5)), "--out", str(out),
        "--api-base", base, "--json", "--no-progress",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, stderr.decode()
    summary = json.loads(stdout)
    assert summary["counts"] == {"uncertain": 5}
    per_job = {body: posts.count(body) for body in set(posts)}
    assert len(per_job) == 5 and max(per_job.values()) <= 3
    print(
        f"\nHTML 502: POSTs per job {sorted(per_job.values())}, {summary['possible_duplicates']=}"
    )
    for failure in summary["failures"]:
        reason = failure["reason"]
        assert "\n" not in reason and "<" not in reason and len(reason) < 200, reason


_FAST_MAIN = (
    "import sys; sys.argv[0] = 'batch-runner'; "
    "from batch_runner.api.policy import set_testing; set_testing(True); "
    "from batch_runner.cli.main import main; sys.exit(main())"
)


def test_retry_failed_gives_failed_jobs_a_new_round(make_sim, tmp_path):
    sim = make_sim("--fail-rate", "1", "--latency", "0.05:0.1", "--image-scale", "0.02")
    out, env = tmp_path / "run", sim_env(sim)
    res = run_cli("run", _manifest(tmp_path, 4), "--out", out, "--retries", "0", env=env)
    assert res.returncode == 1, res.stderr
    assert _status(out)["counts"] == {"failed": 4}

    sim.post("/_sim/config", {"fail_rate": 0})
    res = run_cli("resume", out, "--json", env=env)  # without the flag: they stay failed
    assert res.returncode == 1 and json.loads(res.stdout)["counts"] == {"failed": 4}
    assert sim.stats()["submitted"] == 4

    res = run_cli("resume", out, "--retry-failed", "--json", env=env)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["counts"] == {"done": 4} and summary["retried_failed"] == 4
    assert sim.stats()["submitted"] == 8  # one new attempt each, the old ids kept beside them
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len({line["request_id"] for line in lines}) == 4


def _run_many(args: list, env: dict | None = None) -> dict:
    res = run_cli(*args, "--json", "--no-progress", env=env, timeout=110)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "warning: --concurrency 5000" in res.stderr
    return json.loads(res.stdout)


@pytest.mark.timeout(120)
def test_5000_in_flight_against_the_simulator_sends_each_job_once(make_sim, tmp_path):
    sim = make_sim("--latency", "1:2", "--image-scale", "0.004")
    manifest = _manifest(tmp_path, 2000)
    summary = _run_many(
        ["run", manifest, "--out", tmp_path / "run", "--concurrency", "5000"], sim_env(sim)
    )
    stats = sim.stats()
    print(f"\n5000 in flight, 2000 jobs: {stats['submitted']=} {stats['unique_bodies']=}")
    assert stats["submitted"] == stats["unique_bodies"] == 2000
    assert summary["possible_duplicates"] == 0 and summary["counts"] == {"done": 2000}


@pytest.mark.timeout(120)
def test_5000_in_flight_with_simulate_has_no_possible_duplicates(tmp_path):
    manifest = _manifest(tmp_path, 2000)
    summary = _run_many(
        ["run", manifest, "--out", tmp_path / "run", "--simulate", "--concurrency", "5000"]
    )
    print(f"\n--simulate, 5000 in flight: {summary['possible_duplicates']=}")
    assert summary["possible_duplicates"] == 0, summary["retries"]
    assert summary["counts"] == {"done": 2000}


@pytest.mark.timeout(90)
def test_cancel_stops_a_live_run_then_resume_completes(make_sim, tmp_path):
    sim = make_sim("--capacity", "1", "--latency", "0.3:0.4", "--image-scale", "0.02")
    out, env = tmp_path / "run", sim_env(sim)
    proc = _spawn("run", _manifest(tmp_path, 30), "--out", out, "--concurrency", "4", env=env)
    try:
        _wait_for(lambda: sim.stats()["submitted"] >= 5, proc)
        res = run_cli("cancel", out, env=env)
        assert res.returncode == 0, res.stderr
        assert "told the running batch-runner" in res.stderr
        sent_at_cancel = sim.stats()["submitted"]
        code = proc.wait(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert code == 1, stderr
    assert "cancel requested" in stderr and "Traceback" not in stderr
    assert sim.stats()["submitted"] == sent_at_cancel  # nothing went out after the cancel
    counts = _status(out)["counts"]
    assert counts.get("pending", 0) > 0 and counts.get("failed", 0) == 0

    sim.post("/_sim/config", {"capacity": 0})  # one at a time was for the cancel to land mid-run
    res = run_cli("resume", out, "--json", env=env)
    counts = json.loads(res.stdout)["counts"]
    assert set(counts) <= {"done", "cancelled"} and sum(counts.values()) == 30
    assert res.returncode == (1 if counts.get("cancelled") else 0)


def _spawn(*args: object, env: dict):
    import subprocess

    return subprocess.Popen(
        [CLI, *map(str, args), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, proc, timeout: float = 30.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended too early"
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


# ---- the smaller items ----------------------------------------------------------------------


def test_status_into_a_closed_pipe_ends_quietly(make_sim, tmp_path):
    import subprocess

    sim = make_sim("--image-scale", "0.02")
    out = tmp_path / "run"
    assert run_cli("run", _manifest(tmp_path, 2), "--out", out, env=sim_env(sim)).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write is a broken pipe
    try:
        res = subprocess.run(
            [CLI, "status", str(out)], stdout=write_end, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write_end)
    assert res.returncode == 0 and res.stderr == ""


@pytest.mark.parametrize(
    "flag, value",
    [("--rate", "nan"), ("--rate", "inf"), ("--job-timeout", "nan"), ("--rate", "-1"),
     ("--concurrency", "-5"), ("--retries", "-1"), ("--job-timeout", "-inf")],
)  # fmt: skip
def test_numeric_flags_refuse_nan_inf_and_negatives(tmp_path, flag, value):
    res = run_cli("run", _manifest(tmp_path, 1), "--simulate", flag, value)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error:") and "Traceback" not in res.stderr


def test_same_stem_in_another_folder_needs_its_own_out(make_sim, tmp_path):
    env = sim_env(make_sim("--latency", "0.02:0.05", "--image-scale", "0.02"))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _manifest(tmp_path / folder, 1, name="batch.yaml")
    first = run_cli("run", "a/batch.yaml", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "jobs" / "batch" / "state.db").is_file()
    again = run_cli("run", "a/batch.yaml", env=env, cwd=tmp_path)  # the same one: fine
    assert again.returncode == 0, again.stderr
    res = run_cli("run", "b/batch.yaml", env=env, cwd=tmp_path)
    assert res.returncode == 2 and "--out" in res.stderr and "same name" in res.stderr
    res = run_cli("run", "b/batch.yaml", "--out", "jobs/b", env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("flag", ["--rate-limit", "--image-scale", "--url-ttl", "--submit-delay"])
def test_simulator_numeric_flags_refuse_nan_and_inf(flag):
    for value in ("nan", "inf", "-1"):
        res = run_cli("simulate", "--port", "0", flag, value, timeout=30)
        assert res.returncode == 2 and res.stderr.startswith("error:"), (value, res.stderr)


def test_a_read_only_run_directory_is_named_as_such(tmp_path):
    # root ignores file modes, so the directory is made read-only the way a real mount is:
    # a read-only bind mount in a private mount namespace (unshare -m, util-linux)
    out = tmp_path / "run"
    res = run_cli("run", _manifest(tmp_path, 2), "--out", out, "--simulate", "--no-progress")
    assert res.returncode == 0, res.stderr
    for command in ("status", "report"):
        script = (
            f'mount --bind "{out}" "{out}" && mount -o remount,ro,bind "{out}" && '
            f'exec "{CLI}" {command} "{out}"'
        )
        ro = subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60
        )
        assert ro.returncode == 2, (command, ro.stdout, ro.stderr)
        assert "read-only or not permitted" in ro.stderr, ro.stderr
        assert "not a usable state file" not in ro.stderr and "Traceback" not in ro.stderr
    assert run_cli("status", out).returncode == 0  # writable again outside the namespace
