"""What every step of one job's life shares: its bounds, how a job ends or moves, and what a
call without an answer means (a blip, or an outage that stops the run).

The steps themselves are mixins of `lifecycle.JobRunner`: `job_submit.SubmitSteps`,
`job_poll.PollSteps`, `job_download.DownloadSteps`. The attributes below are the runner's
dataclass fields, declared here for the type checker only (a plain class: no fields made)."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from batch_runner.api.policy import unreachable
from batch_runner.errors import ApiError, UnreachableError
from batch_runner.jobs import NOT_POLLED, JobRecord, JobState

if TYPE_CHECKING:
    from batch_runner.outputs.metadata import MetadataLog
    from batch_runner.run.budget import Budget
    from batch_runner.run.children import Children
    from batch_runner.run.outage import Outage
    from batch_runner.run.polling import PollPlanner, PollTrack
    from batch_runner.run.progress import Tally
    from batch_runner.run.scheduler import Stop
    from batch_runner.settings import RunSettings
    from batch_runner.store.state import StateStore

MAX_CALL_RETRIES = 12  # per call: enough to ride out a storm, bounded so nothing loops forever
MAX_URL_REFRESHES = 3
# an answer that arrived but could not be read is no network blip: asking again rarely helps,
# and each submit of this kind may have created a paid job
MAX_BAD_ANSWERS = 3  # polls in a row
# POSTs in flight at once, apart from the jobs in flight: thousands of submits at one moment
# only make each answer slow, and a slow answer given up on is a possible duplicate
SUBMITS_IN_FLIGHT = 32

S = JobState


class ApiClient(Protocol):
    async def submit(self, model: str, inputs: dict[str, Any]) -> Any: ...
    async def result(self, request_id: str) -> Any: ...


Fetch = Callable[..., Awaitable[Any]]  # download(url, *, run_dir, name_for, parameters, expect)


class Retry(Exception):
    """The generation failed and a new attempt is allowed."""


class Giveup(Exception):
    """The job ends here with the state already recorded."""


class JobSteps:
    """The state helpers every step uses (see the module docstring for the attributes)."""

    store: StateStore
    client: ApiClient
    fetch: Fetch
    settings: RunSettings
    run_dir: Path
    planner: PollPlanner
    tally: Tally
    stop: Stop
    rng: random.Random
    budget: Budget
    outage: Outage
    round_start: dict[int, int]
    metadata_stale: bool
    metadata: MetadataLog
    children: Children | None
    _tracks: dict[int, PollTrack]
    _learned: asyncio.Event
    _downloads: asyncio.Semaphore
    _odd_statuses: set[str]
    _submits: asyncio.Semaphore

    async def _offline_wait(self, exc: ApiError) -> bool:
        """After a call without an answer: wait a little and say so (True), or, once no call has
        been answered for the outage window, stop the run (Giveup; the job keeps its state).
        False for an answer of any kind: the API is reachable."""
        if not unreachable(exc):
            self.outage.answered()
            return False
        if self.outage.unanswered():
            self.stop.fail(
                UnreachableError(
                    f"the API could not be reached for {self.outage.window:g} s "
                    f"({exc.message}); nothing was marked failed. When it is back, continue "
                    f"with `batch-runner resume {self.run_dir}`"
                )
            )
            raise Giveup
        await asyncio.sleep(self.outage.probe_delay(self.rng))
        return True

    def _note(self, job: JobRecord, state: JobState) -> None:
        """A state the API reported (queued, running) or one a resumed run finds again
        (downloading): journaled lazily, with the next commit. The first poll of a job also
        clears its "not polled yet" reason: now it is known to be queued."""
        if job.state is not state or job.reason == NOT_POLLED:
            job.move(state)
            self.store.set_state(job.index, job.state, job.reason, lazy=True)

    def _move(self, job: JobRecord, state: JobState, reason: str | None = None) -> None:
        """A move that carries no other data: checked by the record, then journaled."""
        job.move(state, reason)
        self.store.set_state(job.index, job.state, job.reason)

    def _fail(self, job: JobRecord, reason: str, *, keep: bool = False) -> NoReturn:
        """The job ends: failed, or (`keep`) uncertain, as its submit may have created it."""
        if job.state in (S.PENDING, S.SUBMITTING) and not keep:
            self.budget.release(job.index)  # clearly refused: nothing was created
        else:
            self.budget.settle(job.index, None)  # it may be charged: its estimate is spent
        self._move(job, S.UNCERTAIN if keep else S.FAILED, reason)
        self._finished()
        raise Giveup

    def _finished(self) -> None:
        self.tally.count_finished()


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
