"""The life of one job: submit (journaled), poll until finished, download its files."""

from __future__ import annotations

import asyncio
import functools
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from batch_runner.api.answers import UNKNOWN
from batch_runner.api.policy import Action, Decision, classify, retry_delay, unreachable
from batch_runner.catalog import bundled, read_cached
from batch_runner.errors import (
    AccountError,
    ApiError,
    ErrorKind,
    RemoteError,
    StateError,
    UnreachableError,
)
from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.manifest.naming import DEFAULT_TEMPLATE, job_file_name
from batch_runner.outputs.metadata import MetadataLog, metadata_line, parameters_text
from batch_runner.run.budget import Budget
from batch_runner.run.inline import InputChanged, has_files, inline_body
from batch_runner.run.outage import Outage, outage_window
from batch_runner.run.polling import PollPlanner, PollTrack
from batch_runner.run.progress import Tally
from batch_runner.run.scheduler import Slot, Stop
from batch_runner.settings import RunSettings
from batch_runner.store.costs import BUDGET_REASON
from batch_runner.store.state import StateStore

MAX_CALL_RETRIES = 12  # per call: enough to ride out a storm, bounded so nothing loops forever
MAX_URL_REFRESHES = 3
# an answer that arrived but could not be read is no network blip: asking again rarely helps,
# and each submit of this kind may have created a paid job
MAX_BAD_ANSWERS = 3  # polls in a row
# submits of one job whose answer was lost or unreadable (HTML, 502/504, reset, timeout): each
# may have created a paid job, so the second such loss ends it uncertain, whatever the cause
MAX_LOST_SUBMITS = 2
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


@dataclass
class JobRunner:
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

    # ---- submit ------------------------------------------------------------------------------

    async def _submit(self, job: JobRecord, deadline: float) -> bool:
        """Send the job until the API takes it (True) or it is to wait (False: stopping, or
        uncertain and not to be sent again); a job that cannot be sent ends in Giveup."""
        lost = self._lost_before(job)
        body = await self._body(job)
        tries = 0
        while True:
            uncertain = job.state in (S.UNCERTAIN, S.SUBMITTING)
            if uncertain and not self.settings.resubmit_uncertain:
                return False
            if self.stop.is_set() or not await self._reserve(job):
                return self._back_to_pending(job)
            try:
                # a few POSTs at once: the job waits its turn as it was (never `submitting`
                # while it waits, so a crash then leaves nothing uncertain), and a stop that
                # comes meanwhile is seen before it is sent
                async with self._submits:
                    if not await self._intent(job):
                        return False
                    sent = self.planner.clock()
                    answer = await self.client.submit(job.model, body)
            except ApiError as exc:
                decision = classify(exc, "submit")
                if not await self._submit_failed(job, exc, decision):
                    return False
                if decision.action is Action.AMBIGUOUS:
                    lost += 1
                    if lost >= MAX_LOST_SUBMITS:
                        why = f"{lost} submit answers lost or unreadable ({exc.message})"
                        self._fail(job, f"{why}; the job may exist", keep=True)
                if await self._offline_wait(exc):
                    continue  # an outage is not this job's fault: it does not use up its tries
                tries += 1
                if time.monotonic() > deadline or tries > MAX_CALL_RETRIES:
                    self._fail(
                        job, f"submit kept failing: {exc.message}", keep=job.state is S.UNCERTAIN
                    )
                await asyncio.sleep(retry_delay(exc, tries, self.rng))
                continue
            self.outage.answered()
            self._tracks[job.index] = self.planner.track(sent, self.planner.clock())
            await self._accepted(job, answer.request_id)
            return True

    async def _intent(self, job: JobRecord) -> bool:
        """Right before the POST: the intent to submit on disk (True), or False when the job
        is to wait (a stop came while it waited for room in the budget or a submit slot)."""
        uncertain = job.state in (S.UNCERTAIN, S.SUBMITTING)
        if self.stop.is_set():
            return self._back_to_pending(job)
        job.move(S.SUBMITTING)
        self.store.mark_submitting(job.index, job.state, duplicate_risk=uncertain)
        await self.store.durable()  # the intent is on disk before the POST leaves
        return True

    def _lost_before(self, job: JobRecord) -> int:
        """Submit answers of this job lost in earlier runs: each resend after a loss was
        counted as a duplicate, and an uncertain job lost one more. At the bound it stays."""
        if job.state is not S.UNCERTAIN:
            return 0
        lost = job.duplicates + 1
        if lost >= MAX_LOST_SUBMITS:
            self._finished()
            raise Giveup  # uncertain it stays: another submit could be paid a third time
        return lost

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

    async def _body(self, job: JobRecord) -> dict[str, Any]:
        """What is sent: local files put inline now (in a thread: reading takes a while);
        a file changed or gone since the job was made fails the job instead of being sent."""
        if not has_files(job.inputs):
            return job.inputs
        try:
            return await asyncio.to_thread(inline_body, job.inputs)
        except InputChanged as exc:
            self._fail(job, str(exc), keep=job.state is S.UNCERTAIN)

    async def _submit_failed(self, job: JobRecord, exc: ApiError, decision: Decision) -> bool:
        """Record what a failed submit means; False when the job is to wait as uncertain."""
        match decision.action:
            case Action.STOP:
                raise exc
            case Action.FAIL:
                self._fail(job, f"submit refused: {exc.message}")
            case Action.AMBIGUOUS:
                self.budget.settle(job.index, None)  # it may be charged: its estimate is spent
                reason = f"submit answer lost ({exc.message}); the job may exist"
                self._move(job, S.UNCERTAIN, reason)
                await self.store.durable()
                if not self.settings.resubmit_uncertain:
                    self._finished()
                    return False
            case _:  # RETRY: nothing was created
                self._move(job, S.PENDING, f"submit retry ({decision.cause})")
        self.store.count_retry(decision.cause)
        return True

    async def _accepted(self, job: JobRecord, request_id: str) -> None:
        job.request_ids.append(request_id)
        job.attempts += 1
        job.cost_usd = None  # a new attempt, not charged yet
        job.move(S.QUEUED)
        self.store.record_request_id(job.index, job.state, job.attempts, request_id)
        await self.store.durable()  # the request_id is on disk before anything else happens
        self.tally.count_submitted()

    async def _reserve(self, job: JobRecord) -> bool:
        """Room in the --max-cost budget for this job's estimate (reserved before its POST);
        a job that does not fit is left out with the reason "budget"."""
        if await self.budget.wait_reserve(job.index, job.estimate_usd, self.stop.is_set):
            return True
        if not self.stop.is_set():
            if job.state is S.UNCERTAIN:
                why = "its lost submit may have created it; not sent again"
                self._move(job, S.UNCERTAIN, f"{BUDGET_REASON}: {why} (--max-cost)")
            else:
                self._move(job, S.PENDING, BUDGET_REASON)
        return False

    def _charged(self, job: JobRecord, cost: float | None) -> None:
        """The API finished the job's attempt: keep its cost, free its reservation."""
        if cost is not None and job.attempts and job.cost_usd is None:  # once per attempt
            self.store.record_cost(job.index, job.attempts, cost)
            job.cost_usd = cost
            self.tally.count_cost(cost)
        self.budget.settle(job.index, cost)

    def _back_to_pending(self, job: JobRecord) -> bool:
        self.budget.release(job.index)
        if job.state is S.SUBMITTING:
            self._move(job, S.PENDING)
        return False

    # ---- poll --------------------------------------------------------------------------------

    async def _poll(self, job: JobRecord, deadline: float) -> list[str]:
        track = self._tracks.pop(job.index, None) or self.planner.track()
        try:
            return await self._poll_until_finished(job, track, deadline)
        finally:
            self.planner.finished(track)  # however it ends: no longer in flight

    async def _poll_until_finished(
        self, job: JobRecord, track: PollTrack, deadline: float
    ) -> list[str]:
        errors = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                last = f"; last status {track.odd_status!r}" if track.odd_status else ""
                self._fail(
                    job, f"timed out after {self.settings.job_timeout:g} s (--job-timeout){last}"
                )
            if not await self._poll_due(track, left):
                continue  # the run learned something since this poll was planned: plan again
            try:
                poll = await self.client.result(job.request_id)
            except ApiError as exc:
                if not await self._offline_wait(exc):
                    errors += 1
                    await self._poll_error(job, exc, errors)
                continue
            self.outage.answered()
            errors = 0
            status = poll.status
            track.odd_status = poll.raw_status
            if status in ("in_queue", "in_progress"):
                self.planner.seen(track, status, poll.queue_position)
                self._note(job, S.QUEUED if status == "in_queue" else S.RUNNING)
            elif status == UNKNOWN:  # not finished: keep asking within --job-timeout
                self._odd_status(poll.raw_status or "")
                self.planner.seen(track, status, None)
            elif status == "completed":
                self._charged(job, poll.cost)
                self.planner.completed(track, poll.duration)
                if self.planner.learned:
                    self._learned.set()
                job.move(S.DOWNLOADING)
                self.store.record_outputs(job.index, job.state, poll.outputs)
                self._model_id(job, poll.model_id)
                return list(poll.outputs)
            elif status == "failed":
                self._charged(job, poll.cost)
                self._generation_failed(job, poll.error or "generation failed")
            else:  # cancelled
                self._charged(job, poll.cost)
                self._move(job, S.CANCELLED, "cancelled on the server")
                self._finished()
                raise Giveup

    def _odd_status(self, status: str) -> None:
        """Warn once per run and status nobody documents (the job is polled on)."""
        if status not in self._odd_statuses:
            self._odd_statuses.add(status)
            warn(f"warning: the API answered status {status!r}; taken as not finished yet")

    def _model_id(self, job: JobRecord, model_id: str | None) -> None:
        if model_id is not None:
            job.model_id = model_id
            self.store.record_model_id(job.index, job.attempts, model_id)

    async def _poll_due(self, track: PollTrack, left: float) -> bool:
        """Wait for the job's next poll: True when it is due, False when it is to be planned
        again (the first durations became known; a first poll is due later by the latest plan).
        A poll planned past the deadline (a blind wait for the first durations, a long tail)
        is brought forward to it: the job gets its last look, never an early failure."""
        delay = min(self.planner.next_delay(track), left)
        if track.wake and delay > 0:
            return not await self._woken(delay)
        await asyncio.sleep(delay)
        return delay >= left or self.planner.recheck(track) == 0

    async def _woken(self, delay: float) -> bool:
        """Sleep `delay` seconds or until the planner has learned a duration (True)."""
        try:
            await asyncio.wait_for(self._learned.wait(), delay)
        except TimeoutError:
            return False
        return True

    async def _poll_error(self, job: JobRecord, exc: ApiError, errors: int) -> None:
        """Wait before asking again (the `errors`-th failure in a row), or end the job."""
        decision = classify(exc, "poll")
        limit = MAX_BAD_ANSWERS if decision.cause == ErrorKind.BAD_ANSWER else MAX_CALL_RETRIES
        match decision.action:
            case Action.STOP:
                raise exc
            case Action.EXPIRED if self.settings.simulate:
                # a fresh in-process simulator forgot this id; resubmitting costs nothing there
                self._move(job, S.PENDING, "simulator restarted; submitting again")
                raise Retry
            case Action.EXPIRED:
                self._fail(job, f"expired: the API no longer knows request {job.request_id}")
            case Action.RETRY if errors <= limit:
                self.store.count_retry(decision.cause)
                await asyncio.sleep(retry_delay(exc, errors, self.rng))
            case _:
                self._fail(job, f"polling failed: {exc.message}")

    def _generation_failed(self, job: JobRecord, error: str) -> NoReturn:
        this_round = job.attempts - self.round_start.get(job.index, 0)
        if this_round <= self.settings.retries:  # when stopping, it waits as pending
            self.store.count_retry("generation_failed")
            self._move(job, S.PENDING, f"attempt {job.attempts} failed: {error}")
            raise Retry
        self._fail(job, f"generation failed: {error}")

    # ---- download ----------------------------------------------------------------------------

    async def _fresh_outputs(self, job: JobRecord) -> list[str]:
        """Outputs of a completed job from a new /result call (file URLs may have expired)."""
        for errors in range(1, MAX_CALL_RETRIES + 2):
            try:
                poll = await self.client.result(job.request_id)
            except ApiError as exc:
                await self._poll_error(job, exc, errors)
                continue
            if poll.status != "completed":
                said = poll.raw_status or poll.status
                self._fail(job, f"expected a completed job, the API says '{said}'")
            self._model_id(job, poll.model_id)
            return list(poll.outputs)
        self._fail(job, "could not fetch the result again")

    async def _download(self, job: JobRecord, urls: list[str]) -> None:
        if not urls:
            self._fail(job, "completed without any output file")
        self._note(job, S.DOWNLOADING)
        have = {f.k: f for f in job.files if (self.run_dir / f.file_name).is_file()}
        got = []
        for k in range(1, len(urls) + 1):
            if k in have and (self.run_dir / have[k].file_name).stat().st_size == have[k].bytes:
                continue
            record = await self._download_one(job, urls, k)
            self.store.record_file(job.index, record)
            got.append(record)
        await self._complete(job, got)

    async def _complete(self, job: JobRecord, got: list[FileRecord]) -> None:
        """The file records and `done` on disk in one commit, then the metadata lines (each
        exactly once: a crash before them leaves fewer lines than files, which the next start
        rebuilds from the state)."""
        self._move(job, S.DONE)
        await self.store.durable()
        for record in got:
            if any(f.k == record.k for f in job.files):
                job.files = [f for f in job.files if f.k != record.k]
                self.metadata_stale = True  # its line exists already; rebuilt after the run
            else:
                self.metadata.append(metadata_line(job, record, job.request_id))
            job.files.append(record)
            self.tally.count_file(record.bytes)
        self._finished()

    async def _download_one(self, job: JobRecord, urls: list[str], k: int) -> FileRecord:
        template = self.settings.name_template or DEFAULT_TEMPLATE
        n_files = len(urls)

        def name_for(ext: str) -> str:
            return job_file_name(template, job, index=job.index, k=k, n_files=n_files, ext=ext)

        expect = _kinds_made_by(self.settings.api_base, job.model)

        refreshes = tries = 0
        while True:
            try:
                got = await self.fetch(
                    urls[k - 1],
                    run_dir=self.run_dir,
                    name_for=name_for,
                    parameters=parameters_text(job.model, job.inputs),
                    expect=expect,
                )
            except RemoteError as exc:  # a DownloadError (the file host is not the API)
                decision = classify(exc, "download")
                self.store.count_retry(decision.cause)
                match decision.action:
                    case Action.REFRESH if refreshes < MAX_URL_REFRESHES:
                        refreshes += 1
                        fresh = await self._fresh_outputs(job)
                        if len(fresh) != n_files:
                            self._fail(job, "the result changed its number of files")
                        urls[:] = fresh
                    case Action.RETRY if tries < MAX_CALL_RETRIES:
                        tries += 1
                        await asyncio.sleep(retry_delay(exc, tries, self.rng))
                    case _:
                        self._fail(job, f"download failed: {exc.message}")
                continue
            return FileRecord(got.name, k, got.sha256, got.bytes)

    # ---- state helpers -----------------------------------------------------------------------

    def _note(self, job: JobRecord, state: JobState) -> None:
        """A state the API reported (queued, running) or one a resumed run finds again
        (downloading): journaled lazily, with the next commit."""
        if job.state is not state:
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


@functools.lru_cache(maxsize=256)
def _kinds_made_by(api_base: str, model: str) -> frozenset[str] | None:
    """The media kinds a model's files may be (its catalogue `output_type`: the live entry the
    run resolved and cached, else the bundled one); None: unknown, any kind is taken."""
    entry = read_cached(api_base, model, max_age=None) or bundled().get(model)
    kind = entry.kind if entry is not None else None
    return frozenset({kind}) if kind else None


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
