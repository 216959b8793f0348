"""The life of one job: submit (journaled), poll until finished, download its files.

Each step lives in its own module, as a mixin of JobRunner: `job_submit.py` (the intent on
disk, the POST, lost answers), `job_poll.py` (polls as planned, what the API said),
`job_download.py` (files, `done`, metadata); `job_base.py` holds what they share, and
`uncertain.py` which jobs whose submit answer was lost are sent again."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from batch_runner.errors import AccountError, StateError
from batch_runner.jobs import JobRecord
from batch_runner.outputs.metadata import MetadataLog
from batch_runner.run.budget import Budget
from batch_runner.run.children import Children
from batch_runner.run.job_base import (
    SUBMITS_IN_FLIGHT,
    ApiClient,
    Fetch,
    Giveup,
    Retry,
    S,
)
from batch_runner.run.job_download import DownloadSteps
from batch_runner.run.job_submit import SubmitSteps
from batch_runner.run.outage import Outage, outage_window
from batch_runner.run.polling import PollPlanner, PollTrack
from batch_runner.run.progress import Tally
from batch_runner.run.scheduler import Slot, Stop
from batch_runner.settings import RunSettings
from batch_runner.store.state import StateStore


@dataclass
class JobRunner(SubmitSteps, DownloadSteps):
    store: StateStore
    client: ApiClient
    fetch: Fetch
    settings: RunSettings
    run_dir: Path
    planner: PollPlanner
    tally: Tally  # counts for progress
    stop: Stop  # read before each submit; set when the run cannot go on
    rng: random.Random = field(default_factory=random.Random)
    budget: Budget = field(default_factory=lambda: Budget(None))  # --max-cost
    outage: Outage = field(default_factory=lambda: Outage(outage_window()))
    # attempts a job had before this run's --retry-failed gave it a new round
    round_start: dict[int, int] = field(default_factory=dict)
    children: Children | None = None  # a pipeline's later stages (run/children.py)
    metadata_stale: bool = field(default=False, init=False)  # a line was replaced: rebuild it
    _tracks: dict[int, PollTrack] = field(default_factory=dict, init=False, repr=False)
    # set once, when the planner has learned a first duration: wakes the blind polls
    _learned: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _downloads: asyncio.Semaphore = field(init=False, repr=False)  # jobs downloading at once
    _odd_statuses: set[str] = field(default_factory=set, init=False, repr=False)  # warned once
    _submits: asyncio.Semaphore = field(init=False, repr=False)  # POSTs in flight
    metadata: MetadataLog = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._downloads = asyncio.Semaphore(self.settings.concurrency)
        self._submits = asyncio.Semaphore(min(self.settings.concurrency, SUBMITS_IN_FLIGHT))
        self.metadata = MetadataLog(self.run_dir)

    async def run(self, job: JobRecord, slot: Slot) -> None:
        """Carry one job as far as it can go; every outcome is recorded in the state.

        `slot` is held while the job is at the API (taken again for a new attempt) and
        released the moment the API has finished it, before its files are downloaded."""
        deadline = time.monotonic() + self.settings.job_timeout
        try:
            if job.state is S.DONE:  # files went missing: a fresh /result gives their URLs again
                self._move(job, S.DOWNLOADING)
            while True:
                try:
                    await slot.take()
                    if job.request_id is None and not await self._submit(job, deadline):
                        return
                    urls = await self._poll(job, deadline)
                    slot.release()
                    async with self._downloads:
                        await self._download(job, urls)
                except Retry:  # pending again: the failed attempt's id is no longer current
                    continue
                return
        except Giveup:
            return
        except AccountError as exc:
            self.stop.fail(exc)
            if job.state is S.SUBMITTING:  # refused: nothing was created
                self.budget.release(job.index)
                self._move(job, S.PENDING)
        except OSError as exc:  # writing files (disk full, permissions): the run cannot go on
            self._disk_error(exc)

    def _disk_error(self, exc: OSError) -> None:
        where = exc.filename or self.run_dir
        self.stop.fail(
            StateError(
                f"{where}: cannot write ({exc.strerror or exc}); "
                "free space or fix permissions, then resume"
            )
        )
