"""`batch-runner cancel`: ask the server to cancel every job of a run still waiting in its queue."""

from __future__ import annotations

from typing import Any

import aiohttp

from batch_runner.api.client import RunComfyClient
from batch_runner.errors import ApiError
from batch_runner.jobs import JobState
from batch_runner.store.state import StateStore

CANCELLABLE = (JobState.QUEUED, JobState.RUNNING)


async def cancel_queued(store: StateStore, api_base: str, token: str | None) -> dict[str, Any]:
    """Cancel queued/running jobs; returns request ids by outcome (errors as messages)."""
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
            if answer.outcome == "cancelled":
                job.move(JobState.CANCELLED, "cancelled by `batch-runner cancel`")
                store.set_state(job.index, job.state, job.reason)
                out["cancelled"].append(job.request_id)
            else:
                out["not_cancellable"].append(job.request_id)
        store.flush()
    return out
