"""The worker pool through its three callables, with a spy for `run_one` (as aiometer's tests):
the places at the API are never more than `concurrency` and are all used; files download
outside them; a stopping run starts nothing new; records are read in batches."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from batch_runner.jobs import JobRecord, JobState
from batch_runner.run.scheduler import LOAD_AHEAD, Scheduler, Slot, Todo

S = JobState


def _record(idx: int, state: JobState = S.PENDING) -> JobRecord:
    return JobRecord(key=f"k{idx}", index=idx, model="m", inputs={}, state=state)


@dataclass
class Spy:
    """Stands in for JobRunner.run: holds its place a while, then "downloads" without it."""

    download: float = 0.0
    at_api: int = 0
    peak_at_api: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    ran: list[int] = field(default_factory=list)
    loads: list[list[int]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    def load(self, indexes: list[int]) -> list[JobRecord]:
        self.loads.append(indexes)
        return [_record(i) for i in indexes]

    async def run_one(self, job: JobRecord, slot: Slot) -> None:
        assert slot.held  # a worker takes a job only with a place in hand
        self.ran.append(job.index)
        self.at_api += 1
        self.in_flight += 1
        self.peak_at_api = max(self.peak_at_api, self.at_api)
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        await asyncio.sleep(self.rng.uniform(0, 0.004))
        self.at_api -= 1
        slot.release()
        if self.download:
            await asyncio.sleep(self.download)
        self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [1, 3, 16])
async def test_places_at_the_api_never_exceed_the_limit_and_are_all_used(concurrency):
    spy = Spy()
    todo = [Todo(i, S.PENDING) for i in range(1, 201)]
    await Scheduler(spy.run_one, spy.load, lambda: False, concurrency).run(todo)
    assert sorted(spy.ran) == list(range(1, 201))  # each job once
    assert spy.peak_at_api == concurrency


async def test_downloads_do_not_hold_a_place():
    spy = Spy(download=0.02)
    todo = [Todo(i, S.PENDING) for i in range(1, 61)]
    await Scheduler(spy.run_one, spy.load, lambda: False, 4).run(todo)
    assert spy.peak_at_api == 4
    assert 4 < spy.peak_in_flight <= 8  # twice as many workers as places


async def test_a_job_taking_its_place_again_waits_for_a_free_one():
    at_api = peak = 0

    async def retried(job: JobRecord, slot: Slot) -> None:
        nonlocal at_api, peak
        for _ in range(3):  # e.g. a generation failed and is submitted again
            await slot.take()
            at_api += 1
            peak = max(peak, at_api)
            await asyncio.sleep(0.001)
            at_api -= 1
            slot.release()

    todo = [Todo(i, S.PENDING) for i in range(1, 41)]
    await Scheduler(retried, Spy().load, lambda: False, 2).run(todo)
    assert peak == 2


async def test_a_stopping_run_finishes_jobs_at_the_api_and_starts_nothing_new():
    spy = Spy()
    at_api = [Todo(1, S.DOWNLOADING), Todo(2, S.RUNNING), Todo(3, S.QUEUED), Todo(4, S.DONE)]
    waiting = [Todo(5, S.UNCERTAIN), Todo(6, S.PENDING), Todo(7, S.PENDING)]
    scheduler = Scheduler(spy.run_one, spy.load, lambda: True, 2)
    await scheduler.run(at_api + waiting)
    assert sorted(spy.ran) == [1, 2, 3, 4]
    assert scheduler.waiting == 3  # left for a resume


async def test_records_are_read_in_batches_in_index_order():
    spy = Spy()
    n = 2 * LOAD_AHEAD + 10
    todo = [Todo(i, S.PENDING) for i in range(1, n + 1)]
    await Scheduler(spy.run_one, spy.load, lambda: False, 8).run(todo)
    assert len(spy.loads) == 3
    assert all(batch == sorted(batch) and len(batch) <= LOAD_AHEAD for batch in spy.loads)
    assert sorted(i for batch in spy.loads for i in batch) == list(range(1, n + 1))


async def test_no_work_means_no_worker():
    spy = Spy()
    await Scheduler(spy.run_one, spy.load, lambda: False, 4).run([])
    assert spy.ran == [] and spy.loads == []
