"""One job at the API: poll it when the planner says, until it is finished (completed, failed,
cancelled) or its --job-timeout is over; what the API said is recorded as it comes."""

from __future__ import annotations

import asyncio
import time
from typing import NoReturn

from batch_runner.api.answers import UNKNOWN
from batch_runner.api.policy import Action, classify, retry_delay
from batch_runner.errors import ApiError, ErrorKind
from batch_runner.jobs import JobRecord
from batch_runner.run.job_base import (
    MAX_BAD_ANSWERS,
    MAX_CALL_RETRIES,
    Giveup,
    JobSteps,
    Retry,
    S,
    warn,
)
from batch_runner.run.polling import PollTrack


class PollSteps(JobSteps):
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

    def _charged(self, job: JobRecord, cost: float | None) -> None:
        """The API finished the job's attempt: keep its cost, free its reservation."""
        if cost is not None and job.attempts and job.cost_usd is None:  # once per attempt
            self.store.record_cost(job.index, job.attempts, cost)
            job.cost_usd = cost
            self.tally.count_cost(cost)
        self.budget.settle(job.index, cost)

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
        self._fail(job, _said_once("generation failed", error))


def _said_once(what: str, error: str) -> str:
    """`what: error`, unless the API's error already says it ("generation failed (...)")."""
    return error if error.lower().startswith(what) else f"{what}: {error}"
