"""`cancel_queued` against the simulator on 127.0.0.1: queued jobs are cancelled on the server
and in the state file; a job already generating is not cancellable; jobs without a current
request are not asked about."""

from __future__ import annotations

import aiohttp
from conftest import SIM_TOKEN

from batch_runner.api.client import RunComfyClient
from batch_runner.jobs import JobSpec, JobState
from batch_runner.run.cancel import cancel_queued
from batch_runner.store.state import StateStore

S = JobState
MODEL = "bytedance/seedream-5/lite/text-to-image"


async def _submitted(store: StateStore, base: str, indexes: list[int]) -> dict[int, str]:
    """Submit these jobs for real and record each as the runner does; their request ids."""
    ids = {}
    async with aiohttp.ClientSession() as session:
        client = RunComfyClient(session, base, SIM_TOKEN)
        for job in store.jobs_at(indexes):
            store.mark_submitting(job.index, S.SUBMITTING, duplicate_risk=False)
            answer = await client.submit(job.model, job.inputs)
            store.record_request_id(job.index, S.QUEUED, 1, answer.request_id)
            ids[job.index] = answer.request_id
    store.flush()
    return ids


async def test_queued_jobs_are_cancelled_on_the_server_and_in_the_state(make_sim, tmp_path):
    sim = make_sim("--capacity", "1", "--latency", "30")  # one generates, the rest wait
    store = StateStore.open(tmp_path, create=True)
    try:
        store.sync_jobs(JobSpec(MODEL, {"prompt": f"cancel me {i}"}) for i in range(5))
        ids = await _submitted(store, sim.base_url, [1, 2, 3, 4])
        # job 4's generation failed and it waits to be sent again: no current request
        store.set_state(4, S.PENDING, "attempt 1 failed: boom")
        store.flush()

        out = await cancel_queued(store, sim.base_url, SIM_TOKEN)

        assert out == {"cancelled": [ids[2], ids[3]], "not_cancellable": [ids[1]], "errors": []}
        states = {j.index: (j.state, j.reason, j.request_id) for j in store.jobs()}
        assert states == {
            1: (S.QUEUED, None, ids[1]),  # generating on the server: left alone
            2: (S.CANCELLED, "cancelled by `batch-runner cancel`", ids[2]),
            3: (S.CANCELLED, "cancelled by `batch-runner cancel`", ids[3]),
            4: (S.PENDING, "attempt 1 failed: boom", None),
            5: (S.PENDING, None, None),
        }
        on_server = {j["request_id"]: j["status"] for j in sim.jobs()}
        assert on_server == {
            ids[1]: "in_progress",
            ids[2]: "cancelled",
            ids[3]: "cancelled",
            ids[4]: "in_queue",
        }
        assert sim.stats()["requests"]["cancel"] == 3
    finally:
        store.close()


async def test_an_id_the_server_no_longer_knows_is_reported_not_recorded(make_sim, tmp_path):
    sim = make_sim("--capacity", "1", "--latency", "30")
    store = StateStore.open(tmp_path, create=True)
    try:
        store.sync_jobs(JobSpec(MODEL, {"prompt": f"cancel me {i}"}) for i in range(3))
        ids = await _submitted(store, sim.base_url, [1, 2])
        store.mark_submitting(3, S.SUBMITTING, duplicate_risk=False)
        store.record_request_id(3, S.QUEUED, 1, "expired-long-ago")
        store.flush()

        out = await cancel_queued(store, sim.base_url, SIM_TOKEN)

        assert out["cancelled"] == [ids[2]] and out["not_cancellable"] == [ids[1]]
        (error,) = out["errors"]
        assert error.startswith("#00003 expired-long-ago: ")
        assert [j.state for j in store.jobs()] == [S.QUEUED, S.CANCELLED, S.QUEUED]
    finally:
        store.close()
