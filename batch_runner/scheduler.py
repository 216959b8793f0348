"""The worker pool: at most `concurrency` jobs in flight, in-flight jobs first, graceful stop."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path

from batch_runner.jobs import JobRecord, JobState
from batch_runner.lifecycle import JobRunner

S = JobState
_ORDER = {S.DOWNLOADING: 0, S.RUNNING: 1, S.QUEUED: 2, S.DONE: 3, S.UNCERTAIN: 4, S.PENDING: 5}


def plan(jobs: list[JobRecord], run_dir: Path, *, resubmit_uncertain: bool) -> list[JobRecord]:
    """The jobs that need work, in the order to take them: paid-for ones before new ones."""
    todo = []
    for job in jobs:
        if job.state in (S.FAILED, S.CANCELLED):
            continue
        if job.state is S.DONE and _files_complete(job, run_dir):
            continue
        if job.state is S.UNCERTAIN and not resubmit_uncertain:
            continue
        todo.append(job)
    todo.sort(key=lambda j: (_ORDER.get(j.state, 5), j.index))
    return todo


def _files_complete(job: JobRecord, run_dir: Path) -> bool:
    if not job.files:
        return False
    for f in job.files:
        try:
            if (run_dir / f.file_name).stat().st_size != f.bytes:
                return False
        except OSError:
            return False
    return True


class Scheduler:
    """Runs jobs through `JobRunner` with a fixed number of workers (= jobs in flight)."""

    def __init__(self, runner: JobRunner, concurrency: int):
        self.runner = runner
        self.concurrency = concurrency
        self._queue: deque[JobRecord] = deque()

    async def run(self, todo: list[JobRecord]) -> None:
        self._queue = deque(todo)
        n = min(self.concurrency, len(self._queue))
        workers = [asyncio.create_task(self._worker()) for _ in range(n)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _next(self) -> JobRecord | None:
        tracker = self.runner.tracker
        while self._queue:
            job = self._queue[0]
            if tracker.stopping and job.request_id is None:
                return None  # stopping: nothing new is submitted (the rest wait for a resume)
            return self._queue.popleft()
        return None

    async def _worker(self) -> None:
        while (job := self._next()) is not None:
            await self.runner.run(job)
