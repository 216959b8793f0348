"""`--notify URL` and `--on-done CMD` (issue 29): exactly one POST and one command per run end,
with the right event, exit code and counts, for a finished run, a budget stop, an outage
(exit 4), an account error (exit 3), Ctrl-C (130) and a cancel; a receiver that fails or is
not there is one warning, never a failed run; the token is never sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from aiohttp import web
from conftest import CLI, SIM_TOKEN, sim_env, write_manifest
from fastretry import COMMAND

from batch_runner.run.notify import event_of, human_line
from batch_runner.words import duration_text

OUTAGE_ENV = "BATCH_RUNNER_OUTAGE_SECONDS"
PROMPTS = [f"prompt {i}" for i in range(5)]
# writes what --on-done is given into a file named by its first argument
ON_DONE = (
    f"{sys.executable} -c \"import json, os, sys; json.dump({{'code': "
    "os.environ['BATCH_RUNNER_EXIT_CODE'], 'dir': os.environ['BATCH_RUNNER_RUN_DIR'], "
    "'summary': json.load(open(os.environ['BATCH_RUNNER_SUMMARY'])), "
    "'token': os.environ.get('RUNCOMFY_API_TOKEN')}, open(sys.argv[1], 'w'))\" "
)


async def cli(*args: object, env: dict[str, str], fast: bool = False) -> tuple[int, str, str]:
    """The console script as a subprocess, awaited (the receiver answers meanwhile)."""
    proc = await spawn(*args, env=env, fast=fast)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def spawn(*args: object, env: dict[str, str], fast: bool = False):
    command = COMMAND if fast else [CLI]
    return await asyncio.create_subprocess_exec(
        *command,
        *map(str, args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def receiver(serve):
    """A local webhook: answers 200 and keeps every POSTed JSON body."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    url, server = await serve(ok)
    return url + "/hook", server


def _posts(server) -> list[dict]:
    return [json.loads(seen["body"]) for seen in server.seen if seen["method"] == "POST"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_finished_run_posts_once_and_runs_the_command(sim, receiver, tmp_path: Path):
    url, server = receiver
    out, seen = tmp_path / "run", tmp_path / "on-done.json"
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS[:3])
    code, stdout, err = await cli(
        "run", manifest, "--out", out, "--json", "--notify", url,
        "--on-done", ON_DONE + str(seen), env=sim_env(sim),
    )  # fmt: skip
    assert code == 0, err
    [body] = _posts(server)
    assert set(body) == {"event", "exit_code", "run_dir", "text", "content", "summary"}
    assert (body["event"], body["exit_code"], body["run_dir"]) == ("finished", 0, str(out))
    assert body["summary"]["counts"] == {"done": 3} == json.loads(stdout)["counts"]
    assert body["text"] == body["content"]
    assert body["text"].startswith(f"batch_runner: {out} finished: 3 done, $")
    headers = {k.lower() for k in server.seen[0]["headers"]}
    assert "authorization" not in headers and SIM_TOKEN not in server.seen[0]["body"].decode()
    done = json.loads(seen.read_text())
    assert (done["code"], done["dir"], done["token"]) == ("0", str(out), None)
    assert done["summary"]["counts"] == {"done": 3}
    assert "warning" not in err


async def test_budget_stop_is_its_own_event(sim, receiver, tmp_path: Path):
    url, server = receiver
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS)
    code, _, err = await cli(
        "run", manifest, "--out", tmp_path / "run", "--max-cost", "0.05", "--notify", url,
        env=sim_env(sim),
    )  # fmt: skip
    assert code == 1, err
    [body] = _posts(server)
    assert (body["event"], body["exit_code"]) == ("budget", 1)
    assert body["summary"]["counts"]["pending"] == 3 and "3 pending" in body["text"]
    assert "stopped by --max-cost" in body["text"]


async def test_outage_and_account_error_are_told(make_sim, receiver, tmp_path: Path):
    url, server = receiver
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env |= {"RUNCOMFY_API_TOKEN": "x", OUTAGE_ENV: "2"}
    base = f"http://127.0.0.1:{_closed_port()}"
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS[:2])
    code, _, err = await cli(
        "run", manifest, "--out", tmp_path / "a", "--api-base", base, "--notify", url,
        env=env, fast=True,
    )  # fmt: skip
    assert code == 4, err
    sim = make_sim("--latency", "0.02:0.05")
    bad = sim_env(sim, RUNCOMFY_API_TOKEN="not-the-token")
    code, _, err = await cli("run", manifest, "--out", tmp_path / "b", "--notify", url, env=bad)
    assert code == 3, err
    outage, account = _posts(server)
    assert (outage["event"], outage["exit_code"]) == ("outage", 4)
    assert outage["summary"]["counts"] == {"pending": 2}
    assert "could not be reached" in outage["summary"]["error"]
    assert (account["event"], account["exit_code"]) == ("account_error", 3)
    assert "not-the-token" not in json.dumps(account)


async def test_ctrl_c_and_cancel_are_told(make_sim, receiver, tmp_path: Path):
    url, server = receiver
    sim = make_sim("--latency", "1.5:2")
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS)
    for name, stop in (("ctrl-c", None), ("cancel", "cancel")):
        out = tmp_path / name
        args = ("run", manifest, "--out", out, "--concurrency", "2", "--notify", url)
        proc = await spawn(*args, env=sim_env(sim))
        # wait for its first submits: its stderr says the run directory, then jobs go out
        while "run directory" not in (line := (await proc.stderr.readline()).decode()):
            assert line, "the run ended before it started"
        submitted = sim.stats()["submitted"]
        while sim.stats()["submitted"] < submitted + 1:
            await asyncio.sleep(0.05)
        if stop is None:
            proc.send_signal(signal.SIGINT)
        else:
            code, _, err = await cli("cancel", out, env=sim_env(sim))
            assert code == 0, err
        await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == (130 if stop is None else 1)
    interrupted, cancelled = _posts(server)
    assert (interrupted["event"], interrupted["exit_code"]) == ("interrupted", 130)
    assert interrupted["summary"]["counts"].get("pending", 0) >= 1
    assert (cancelled["event"], cancelled["exit_code"]) == ("cancelled", 1)


async def test_a_failing_receiver_is_one_warning(sim, serve, tmp_path: Path):
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503)

    url, server = await serve(broken)
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS[:1])
    code, _, err = await cli(
        "run", manifest, "--out", tmp_path / "a", "--notify", url + "/secret-path", env=sim_env(sim)
    )
    assert code == 0
    assert len(server.seen) == 2  # one retry
    warnings = [line for line in err.splitlines() if line.startswith("warning: --notify")]
    assert warnings == [
        "warning: --notify: could not deliver the end-of-run message to 127.0.0.1 (HTTP 503)"
    ]
    gone = f"http://127.0.0.1:{_closed_port()}/hook"
    code, _, err = await cli(
        "run", manifest, "--out", tmp_path / "b", "--notify", gone, "--on-done", "exit 3",
        env=sim_env(sim),
    )  # fmt: skip
    assert code == 0
    assert err.count("warning: --notify") == 1 and "--on-done: the command exited with 3" in err
    code, _, err = await cli(
        "run", manifest, "--out", tmp_path / "c", "--notify", "ftp://x", env=sim_env(sim)
    )
    assert code == 2 and "--notify must be an http(s) URL" in err


def test_event_and_human_line():
    summary = {
        "counts": {"done": 1980, "failed": 20},
        "cost": {"spent_usd": 59.4},
        "wall_seconds": 7 * 3600 + 12 * 60 + 5,
    }
    assert event_of(0, summary) == "finished" and event_of(1, summary) == "finished"
    assert event_of(1, summary, cancelled=True) == "cancelled"
    assert event_of(1, {"cost": {"left_by_budget": {"jobs": 3}}}) == "budget"
    assert [event_of(c, summary) for c in (2, 3, 4, 130)] == [
        "error", "account_error", "outage", "interrupted",
    ]  # fmt: skip
    line = human_line("finished", "jobs/night", summary)
    assert line == "batch_runner: jobs/night finished: 1,980 done, 20 failed, $59.40 — 7 h 12 min"
    assert (duration_text(59.6), duration_text(125)) == ("1 min 0 s", "2 min 5 s")
