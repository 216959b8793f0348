"""One job's submit: the intent on disk, the POST, and what a lost or refused answer means
(the request_id is durable before anything else happens with it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from batch_runner.api.policy import Action, Decision, classify, retry_delay, unreachable
from batch_runner.errors import ApiError
from batch_runner.jobs import NOT_POLLED, JobRecord
from batch_runner.run.inline import InputChanged, has_files, read_inline_body
from batch_runner.run.job_base import MAX_CALL_RETRIES, Giveup, JobSteps, S
from batch_runner.run.parent_urls import DeadInput, names_field
from batch_runner.run.uncertain import loss_bound, lost_before, lost_reason, sends
from batch_runner.store.costs import BUDGET_REASON

UNREACHABLE = "unreachable"  # the retry cause of a submit that found no connection


class SubmitSteps(JobSteps):
    async def _submit(self, job: JobRecord, deadline: float) -> bool:
        """Send the job until the API takes it (True) or it is to wait (False: stopping, or
        uncertain and not to be sent again); a job that cannot be sent ends in Giveup."""
        lost, bound = self._lost_before(job)
        await self._missing_input(job)
        self._known_dead_input(job)
        body = await self._body(job)
        tries = 0
        while True:
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
                    self.tally.count_sending(1)
                    try:
                        answer = await self.client.submit(job.model, body)
                    finally:
                        self.tally.count_sending(-1)
            except ApiError as exc:
                if await self._input_replaced(job, exc):
                    body = await self._body(job)
                    continue
                decision = classify(exc, "submit")
                await self._submit_failed(job, exc, decision)
                if decision.action is Action.AMBIGUOUS:
                    lost += 1
                    if lost >= bound:  # uncertain it stays (run/uncertain.py)
                        self._fail(job, lost_reason(lost, exc.message), keep=True)
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

    def _lost_before(self, job: JobRecord) -> tuple[int, int]:
        """Submit answers of this job lost in earlier runs, and how many lost answers in all
        leave it uncertain in this run (run/uncertain.py); a job not to be sent stays as it is
        (the plan leaves such jobs out: this is the last guard)."""
        if not sends(self.settings, job.state, job.duplicates):
            self._finished()
            raise Giveup  # uncertain it stays: another submit could be paid once more
        lost = lost_before(job.state, job.duplicates)
        return lost, loss_bound(self.settings, job.state, job.duplicates)

    async def _body(self, job: JobRecord) -> dict[str, Any]:
        """What is sent: local files put inline now (read through aiofiles, off the loop);
        a file changed or gone since the job was made fails the job instead of being sent."""
        if not has_files(job.inputs):
            return job.inputs
        try:
            return await read_inline_body(job.inputs)
        except InputChanged as exc:
            self._fail(job, str(exc), keep=job.state is S.UNCERTAIN)

    async def _missing_input(self, job: JobRecord) -> None:
        """A child made without its parent's URL (not kept) gets one, or fails saying why."""
        children = self.children
        if children is not None and children.urls is not None:
            for field in children.fields_of(job):
                try:
                    await children.urls.fill(job, field, children.source)
                except DeadInput as dead:
                    self._fail(job, f"{field}: {dead}")  # raises: the job ends here

    def _known_dead_input(self, job: JobRecord) -> None:
        """A child whose parent URL is known dead gets its replacement before it is sent."""
        children = self.children
        if children is not None and children.urls is not None:
            for field in children.fields_of(job):
                children.urls.known(job, field)

    async def _input_replaced(self, job: JobRecord, exc: ApiError) -> bool:
        """A child refused for its parent's URL (run/parent_urls.py): the URL replaced and the
        job to be sent again (True), or the job failed saying why; False for other refusals."""
        children = self.children
        if children is None or children.urls is None:
            return False
        fields = [f for f in children.fields_of(job) if names_field(exc, f)]
        if not fields:
            return False
        self.budget.release(job.index)  # refused: nothing was created
        self._move(job, S.PENDING, "input URL refused: refreshed from the parent's result")
        self.store.count_retry("input_url_refreshed")
        for field in fields:  # each refused {from:} field (several: one chain's files)
            try:
                await children.urls.replace(job, field, exc.message, children.source)
            except DeadInput as dead:
                self._fail(job, f"{field}: {dead}")  # raises: the job ends here
        return True

    async def _submit_failed(self, job: JobRecord, exc: ApiError, decision: Decision) -> None:
        """Record what a failed submit means (whether it is sent again is the caller's)."""
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
            case _:  # RETRY: nothing was created
                self._move(job, S.PENDING, f"submit retry ({decision.cause})")
        # no connection at all (refused, DNS, TLS): the API is unreachable, nothing "dropped"
        cause = UNREACHABLE if unreachable(exc) and not exc.sent else decision.cause
        self.store.count_retry(cause)

    async def _accepted(self, job: JobRecord, request_id: str) -> None:
        job.request_ids.append(request_id)
        job.attempts += 1
        job.cost_usd = None  # a new attempt, not charged yet
        job.move(S.QUEUED, NOT_POLLED)  # queued or running: the first poll will say
        self.store.record_request_id(job.index, job.state, job.attempts, request_id, job.reason)
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

    def _back_to_pending(self, job: JobRecord) -> bool:
        self.budget.release(job.index)
        if job.state is S.SUBMITTING:
            self._move(job, S.PENDING)
        return False
