"""Telling someone a run ended (CONTRACT §2, release 3): `--notify URL` POSTs one JSON object,
`--on-done CMD` runs one shell command, for every way a run ends or stops (finished, budget,
outage, account error, Ctrl-C, cancel). Called once, where the run's coroutine ends
(`cli/commands.py: run_batch`).

Neither ever fails the run: a POST that does not go through (after one retry) or a command
that fails is one warning on stderr. The POST carries no Authorization header and nothing of
the token (the summary is the `status --json` object, read from the state file, which never
holds it); the URL itself is printed by its host only (a Slack or Discord webhook URL is a
secret of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batch_runner.errors import UsageError
from batch_runner.jobs import JobState
from batch_runner.money import dollars
from batch_runner.words import duration_text

POST_TIMEOUT = 10.0  # seconds per try
RETRY_AFTER = 1.0
TOKEN_VARIABLES = ("RUNCOMFY_API_TOKEN", "RUNCOMFY_TOKEN")
EVENTS = {
    "finished": "finished",
    "budget": "stopped by --max-cost",
    "cancelled": "cancelled",
    "interrupted": "interrupted",
    "outage": "stopped: the API could not be reached",
    "account_error": "stopped: account error",
    "error": "stopped by an error",
}


@dataclass(frozen=True)
class EndHooks:
    """What to do when the run ends: the URL to POST to, the command to run (either None)."""

    notify: str | None = None
    on_done: str | None = None

    def __post_init__(self) -> None:
        if self.notify is not None:
            parts = urlsplit(self.notify)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UsageError(f"--notify must be an http(s) URL, got '{self.notify}'")
        if self.on_done is not None and not self.on_done.strip():
            raise UsageError("--on-done needs a command")

    def __bool__(self) -> bool:
        return self.notify is not None or self.on_done is not None


def event_of(exit_code: int, summary: dict[str, Any], *, cancelled: bool = False) -> str:
    """The one word naming how the run ended."""
    if exit_code == 130:
        return "interrupted"
    if exit_code == 4:
        return "outage"
    if exit_code == 3:
        return "account_error"
    if exit_code == 2:
        return "error"
    if cancelled:
        return "cancelled"
    if (summary.get("cost") or {}).get("left_by_budget"):
        return "budget"
    return "finished"


def human_line(event: str, run_dir: Path | str, summary: dict[str, Any]) -> str:
    """E.g. `batch_runner: jobs/night finished: 1,980 done, 20 failed, $59.40 — 7 h 12 min`."""
    counts = summary.get("counts") or {}
    parts = [f"{counts.get(JobState.DONE.value, 0):,} done"]
    for state in (JobState.FAILED, JobState.CANCELLED, JobState.UNCERTAIN, JobState.PENDING):
        if counts.get(state.value):
            parts.append(f"{counts[state.value]:,} {state.value}")
    spent = (summary.get("cost") or {}).get("spent_usd")
    if spent is not None:
        parts.append(dollars(spent) if spent < 1000 else f"${spent:,.2f}")
    line = f"batch_runner: {run_dir} {EVENTS.get(event, event)}: {', '.join(parts)}"
    wall = summary.get("wall_seconds")
    return line + (f" — {duration_text(wall)}" if wall is not None else "")


async def run_end(
    hooks: EndHooks, exit_code: int, run_dir: Path, summary: dict[str, Any], *, event: str
) -> None:
    """The POST, then the command (each at most once); never raises but for a second Ctrl-C."""
    if hooks.notify is not None:
        body = {
            "event": event,
            "exit_code": exit_code,
            "run_dir": str(run_dir),
            "text": human_line(event, run_dir, summary),
            "content": human_line(event, run_dir, summary),
            "summary": summary,
        }
        await post(hooks.notify, body)
    if hooks.on_done is not None:
        await run_command(hooks.on_done, exit_code, run_dir, summary)


async def post(url: str, body: dict[str, Any]) -> bool:
    """One POST (one retry after a connection error, a timeout, a 429 or a 5xx)."""
    import aiohttp

    host = urlsplit(url).hostname
    why = ""
    timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT)
    # a session of its own: no cookies, no Authorization header, nothing shared with the API
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as s:
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(RETRY_AFTER)
            try:
                async with s.post(url, json=body) as response:
                    await response.read()
                    if response.status < 300:
                        return True
                    why = f"HTTP {response.status}"
                    if response.status != 429 and response.status < 500:
                        break  # the receiver refuses it: asking again changes nothing
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                why = type(exc).__name__ if not str(exc) else str(exc).split(" [")[0]
    _warn(f"--notify: could not deliver the end-of-run message to {host} ({why})")
    return False


async def run_command(command: str, exit_code: int, run_dir: Path, summary: dict[str, Any]) -> int:
    """CMD through the shell, the summary in a JSON file named by BATCH_RUNNER_SUMMARY (removed
    after); its output goes to stderr (stdout stays the run's own, e.g. `--json`)."""
    fd, name = tempfile.mkstemp(prefix="batch-runner-summary-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, default=str)
    # the command needs no token: it gets none (least privilege), whatever the shell had
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES} | {
        "BATCH_RUNNER_EXIT_CODE": str(exit_code),
        "BATCH_RUNNER_RUN_DIR": str(run_dir),
        "BATCH_RUNNER_SUMMARY": name,
    }
    try:
        proc = await asyncio.create_subprocess_shell(
            command, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=sys.stderr.fileno()
        )
        code = await proc.wait()
    except OSError as exc:
        _warn(f"--on-done: could not run the command ({exc.strerror})")
        return -1
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    if code != 0:
        _warn(f"--on-done: the command exited with {code}")
    return code


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)
