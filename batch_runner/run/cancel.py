"""`batch-runner cancel`: ask the server to cancel every job of a run still waiting in its queue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import aiohttp

from batch_runner.api.client import RunComfyClient
from batch_runner.errors import ApiError
from batch_runner.jobs import JobState
from batch_runner.run.lock import CANCEL_SIGNAL, RunLock
from batch_runner.store.state import StateStore

CANCELLABLE = (JobState.QUEUED, JobState.RUNNING)


async def cancel_queued(
    store: StateStore, api_base: str, token: str | None, *, record: bool = True
) -> dict[str, Any]:
    """Cancel queued/running jobs; returns request ids by outcome (errors as messages).

    `record=False` while the run itself is live: it sees the cancelled jobs as it polls them
    and records them itself (one writer of job states per run)."""
    out: dict[str, list[str]] = {"cancelled": [], "not_cancellable": [], "errors": []}
    jobs = [j for j in store.jobs(with_files=False) if j.state in CANCELLABLE and j.request_id]
    async with aiohttp.ClientSession() as session:
        client = RunComfyClient(session, api_base.rstrip("/"), token)
        for job in jobs:
            try:
                answer = await client.cancel(job.request_id)
            except ApiError as exc:
                out["errors"].append(f"#{job.index:05d} {job.request_id}: {exc.message}")
                continue
            if answer.outcome == "cancelled" and record:
                job.move(JobState.CANCELLED, "cancelled by `batch-runner cancel`")
                store.set_state(job.index, job.state, job.reason)
            if answer.outcome == "cancelled":
                out["cancelled"].append(job.request_id)
            else:
                out["not_cancellable"].append(job.request_id)
        if record:
            store.flush()
    return out


def stop_live_run(run_dir: Path) -> int | None:
    """Ask the process running `run_dir` (the lock's owner) to stop submitting; its pid."""
    pid = RunLock(run_dir).owner()
    if pid is None:
        return None
    try:
        os.kill(pid, CANCEL_SIGNAL)
    except OSError:  # gone in between, or not ours to signal (another machine's pid space)
        return None
    return pid
