"""The worker pool: at most `concurrency` jobs in flight, in-flight jobs first, graceful stop.

A job is in flight from its submit until the API has finished it; its files download outside
that count (at most `concurrency` jobs download at once), so the next submit does not wait
for them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from batch_runner.errors import BatchRunnerError
from batch_runner.jobs import WITHOUT_REQUEST, JobRecord, JobState

if TYPE_CHECKING:
    from batch_runner.store.state import StateStore

S = JobState
LOAD_AHEAD = 256  # job records read per query (pending jobs change only through this process)
_ORDER = {S.DOWNLOADING: 0, S.RUNNING: 1, S.QUEUED: 2, S.DONE: 3, S.UNCERTAIN: 4, S.PENDING: 5}


@dataclass(slots=True)
class Todo:
    """A job waiting for a worker: just enough to order it; the record is read when taken."""

    index: int
    state: JobState


class Slot:
    """One of the `--concurrency` places at the API: held from submit until the API finishes
    the job, not while its files download (the next job's submit overlaps the download)."""

    def __init__(self, places: asyncio.Semaphore, *, held: bool):
        self._places = places
        self.held = held

    async def take(self) -> None:
        if not self.held:
            await self._places.acquire()
            self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._places.release()


class Stop:
    """Whether the run still takes new jobs. A signal asks for a graceful stop; `batch-runner
    cancel` asks for one too (`cancelled`: the run then ends as unfinished, exit 1, not as
    interrupted); an error no job can get past (account, disk, an outage) stops it as `fatal`.
    Jobs already at the API finish either way."""

    def __init__(self) -> None:
        self._set = False
        self.signals = 0
        self.cancelled = False
        self.fatal: BatchRunnerError | None = None

    def cancel(self) -> None:
        self.cancelled = True
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def signal(self) -> None:
        self.signals += 1
        self._set = True

    def fail(self, exc: BatchRunnerError) -> None:
        self.fatal = self.fatal or exc  # the first cause is the one reported
        self._set = True

    @property
    def interrupted(self) -> bool:
        """Stopped by a signal, not by an error."""
        return self.signals > 0 and self.fatal is None


Sends = Callable[[JobState, int], bool]  # (state, possible duplicates) -> submitted this run
RunOne = Callable[[JobRecord, Slot], Awaitable[None]]  # carry one job as far as it goes
Load = Callable[[list[int]], list[JobRecord]]  # the records at these (ascending) indexes


def plan(
    store: StateStore, run_dir: Path, *, sends: Sends, skip: Collection[int] = frozenset()
) -> list[Todo]:
    """The jobs that need work, in the order to take them: paid-for ones before new ones.
    `sends`: whether this run submits a job waiting in this state (run/uncertain.py);
    `skip`: new jobs this run leaves pending (outside its --pilot)."""
    complete = _complete_jobs(store, run_dir)
    todo = []
    for idx, state, duplicates in store.todo_rows():
        state = JobState(state)
        if state is S.DONE and idx in complete:
            continue
        if state in WITHOUT_REQUEST and (idx in skip or not sends(state, duplicates)):
            continue
        todo.append(Todo(idx, state))
    todo.sort(key=lambda j: (_ORDER.get(j.state, 5), j.index))
    return todo


def _complete_jobs(store: StateStore, run_dir: Path) -> set[int]:
    """Indexes of done jobs whose files are all on disk with their recorded sizes."""
    complete: set[int] = set()
    broken: set[int] = set()
    for idx, name, size in store.done_files():
        if idx in broken:
            continue
        try:
            ok = (run_dir / name).stat().st_size == size
        except OSError:
            ok = False
        if ok:
            complete.add(idx)
        else:
            broken.add(idx)
            complete.discard(idx)
    return complete


class Scheduler:
    """Runs jobs through `run_one`: `concurrency` places at the API, twice as many workers (the
    second half carries jobs whose files are downloading). It knows the rest of the run only
    through three callables: run one job, load records, and whether the run is stopping."""

    def __init__(self, run_one: RunOne, load: Load, stopping: Callable[[], bool], concurrency: int):
        self._run_one = run_one
        self._load = load
        self._stopping = stopping
        self.concurrency = concurrency
        self._queue: deque[Todo] = deque()
        self._places = asyncio.Semaphore(concurrency)
        self._loaded: dict[int, JobRecord] = {}  # records read ahead, by index
        # a pipeline: jobs in flight may add children (`add`), so idle workers wait for them
        # until no job is in flight any more
        self.streaming = False
        self._busy = 0
        self._seen: set[int] = set()
        self._changed = asyncio.Event()

    def add(self, todo: list[tuple[int, str]]) -> int:
        """New jobs (children of a job just done) join the queue, each once; returns how many
        were new."""
        added = 0
        for idx, state in todo:
            if idx not in self._seen:
                self._seen.add(idx)
                self._queue.append(Todo(idx, JobState(state)))
                added += 1
        self._wake()
        return added

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def run(self, todo: list[Todo]) -> None:
        self._queue = deque(todo)
        if self.streaming:
            self._seen = {t.index for t in todo}
        n = min(2 * self.concurrency, len(self._queue))
        if self.streaming:
            n = 2 * self.concurrency
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
        if not self._queue:
            return None
        if self._stopping() and self._queue[0].state in WITHOUT_REQUEST:
            return None  # stopping: nothing new is submitted (the rest wait for a resume)
        todo = self._queue.popleft()
        record = self._loaded.pop(todo.index, None)
        if record is None:  # read the records of the next jobs in one query, not one each
            batch = sorted([todo.index] + [t.index for t in islice(self._queue, LOAD_AHEAD - 1)])
            self._loaded = {job.index: job for job in self._load(batch)}
            record = self._loaded.pop(todo.index)
        return record

    async def _worker(self) -> None:
        while True:
            await self._places.acquire()  # a place first, so a job is taken only to go ahead
            slot = Slot(self._places, held=True)
            try:
                job = self._next()
                if job is None:
                    if not (self.streaming and self._busy):
                        self._wake()  # the others see that nothing more will come
                        return
                    slot.release()
                    await self._changed.wait()  # a job finished or children were added
                    continue
                self._busy += 1
                try:
                    await self._run_one(job, slot)
                finally:
                    self._busy -= 1
                    if self.streaming:
                        self._wake()
            finally:
                slot.release()
