"""When to poll a job: learned running times, queue waits and queue positions (no I/O).

A job's life on the server is a queue wait, then a run. The planner learns the two apart:
running times from jobs whose start was seen closely (a poll saw `in_queue` or nothing yet,
and the next one `in_progress`, a short time apart), waits from every finished job (its
server-measured duration minus the part that can have been running). For a job it keeps a
`PollTrack`: the window in which its generation started (from the waits seen lately, then
narrowed by each poll; a queued job starts after `queue_position` completions, at the rate
completions have been seen). The job completes in [start_lo + run_lo, start_hi + run_hi]:
polls are spaced `step` apart across that window, anchored at its end so the first one lands
as late as the spacing allows, then back off geometrically. With nothing learned yet the
first poll goes out at once and the next ones on a geometric grid whose phase differs from job
to job (jobs submitted together are polled often as a group, rarely each).

What one job shows is shared: a job last seen `in_queue` at position p is not polled again
while the run's own jobs are running and fewer than p of them have been seen to end since
(its turn cannot have come); the p-th end is then its start. Such a plan sets `wake`: the
caller waits for the next completion seen in the run (or the delay) and asks again, and the
first completion re-plans every job polled blind so far.
"""

from __future__ import annotations

import math
import time
from bisect import insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class _Window:
    """The last `size` values, kept sorted for quantiles."""

    def __init__(self, size: int):
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._size = size

    def add(self, value: float) -> None:
        if len(self._recent) == self._size:
            self._sorted.remove(self._recent.popleft())
        self._recent.append(value)
        insort(self._sorted, value)

    def __len__(self) -> int:
        return len(self._sorted)

    def quantile(self, q: float) -> float:
        values = self._sorted
        return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class PollTrack:
    """What the polls of one job have shown (monotonic seconds)."""

    sent: float  # the submit left (or the job was picked up on resume)
    submitted: float  # its answer arrived
    polls: int = 0
    last_poll: float | None = None
    queued_at: float | None = None  # the last poll that saw it in_queue
    position: int = 0  # its queue position then
    running_at: float | None = None  # the first poll that saw it in_progress
    start_lo: float | None = None  # the generation started in [start_lo, start_hi]
    start_hi: float | None = None
    resumed: bool = False  # submitted by an earlier process: nothing known about its start
    done_before: int = 0  # completions the run had seen when it was last seen in_queue
    phase: float = 0.0  # staggers the blind back-off of jobs submitted together
    wake: bool = False  # the next completion seen in the run may bring its next poll forward
    odd_status: str | None = None  # the last status seen, when it was one nobody documents


class PollPlanner:
    """Adaptive poll times for every job of a run (see the module docstring)."""

    WINDOW = 16  # recent values only: queue depth changes what "normal" is
    GROWTH = 1.0  # before anything is learned the next poll comes after GROWTH x elapsed
    DENSE_SPLIT = 1.25  # the poll step is the spread of running times over this ...
    DENSE_MAX = 3.0  # ... at most this (p50 detection delay ≈ half the step) ...
    STEP_FLOOR = 0.02  # ... and at least this (fixed-duration jobs)
    TAIL = 1.0  # past the window the next poll comes after TAIL x the overrun
    TIGHT = 0.25  # a start seen within this many seconds (or 10 % of the run) is exact
    WAIT_LO, WAIT_HI = 0.25, 0.75  # the part of the recent waits a new job is expected in
    QUEUE_BACKOFF = 4  # a queued job with nothing learned waits up to this x longer
    FEW = 4  # with fewer running times than this their spread is not trusted
    QUEUE_SLACK = 0.25  # a queued job starts within ± this fraction of its predicted wait
    BLIND_RATIO = 4.0  # blind polls at min_delay x BLIND_RATIO ** (n + phase) after the submit
    PHASE = 0.6180339887  # golden ratio: the phases of successive jobs spread evenly
    HISTORY = 1024  # completions remembered for the queue turns of queued jobs

    def __init__(
        self,
        *,
        min_delay: float = 0.25,
        max_delay: float = 15.0,
        prior: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.prior = prior
        self.clock = clock
        self._runs = _Window(self.WINDOW)
        self._waits = _Window(self.WINDOW)
        self._done_at: deque[float] = deque(maxlen=self.WINDOW)
        self._completions = 0
        self._finishes: deque[float] = deque(maxlen=self.HISTORY)  # when completed jobs ended
        self._busy_at = -math.inf  # when a poll last saw a job of this run running or done
        self._serial = 0

    # ---- tracking ----------------------------------------------------------------------------

    def track(self, sent: float | None = None, answered: float | None = None) -> PollTrack:
        """A track for a job submitted at `sent` and answered at `answered` (clock times).

        Without them (a job submitted by an earlier process) nothing is known of its start.
        """
        now = self.clock()
        resumed = sent is None
        t = PollTrack(
            sent=now if sent is None else sent,
            submitted=now if answered is None else answered,
            resumed=resumed,
            phase=(self._serial * self.PHASE) % 1.0,
        )
        self._serial += 1
        if not resumed and len(self._waits):
            t.start_lo = t.sent + self._waits.quantile(self.WAIT_LO)
            t.start_hi = t.submitted + self._waits.quantile(self.WAIT_HI)
        return t

    def seen(self, t: PollTrack, status: str, queue_position: int | None) -> None:
        """Record one poll's answer (`in_queue` or `in_progress`)."""
        now = self.clock()
        t.polls += 1
        t.last_poll = now
        if status == "in_queue":
            t.queued_at = now
            t.position = queue_position or 0
            t.done_before = self._completions
            t.running_at = None
            slot = self._slot()
            if slot is None or not queue_position:
                t.start_lo, t.start_hi = now, None
                return
            wait = queue_position * slot
            t.start_lo = now + wait * (1 - self.QUEUE_SLACK)
            t.start_hi = now + wait * (1 + self.QUEUE_SLACK) + slot
        elif status == "in_progress" and t.running_at is None:
            self._busy_at = now
            t.running_at = now
            low = t.queued_at if t.queued_at is not None else (None if t.resumed else t.sent)
            t.start_hi = now if t.start_hi is None else min(t.start_hi, now)
            bounds = [b for b in (low, t.start_lo) if b is not None]
            t.start_lo = min(max(bounds), t.start_hi) if bounds else None
            if t.start_lo is None and len(self._runs):
                t.start_lo = t.start_hi - self._run_hi()  # resumed: it may have run a while

    def completed(self, t: PollTrack, duration: float | None) -> None:
        """Learn from a job seen completed; `duration` is the server's created→finished."""
        now = self.clock()
        self._done_at.append(now)
        self._busy_at = now
        self._completions += 1
        if t.resumed:
            self._finishes.append(now)
            return
        total = duration if duration is not None and math.isfinite(duration) else None
        if total is None or total < 0:
            total = now - t.submitted
        finish = min(now, t.submitted + total)
        self._finishes.append(finish)
        low = t.queued_at if t.queued_at is not None else t.sent
        high = t.running_at if t.running_at is not None else now
        high = min(high, finish)
        if high - low <= max(self.TIGHT, 0.1 * (finish - high)):
            self._runs.add(max(0.0, finish - (low + high) / 2))
        elif t.queued_at is None and len(self._waits) and self._waits.quantile(0.9) <= self.TIGHT:
            self._runs.add(max(0.0, total))  # no queue lately: the run is the whole duration
        if len(self._runs):
            low = max(low, finish - self._run_hi())
            high = max(low, min(high, finish - self._runs.quantile(0.0)))
        self._waits.add(max(0.0, (low + high) / 2 - t.submitted))

    # ---- planning ----------------------------------------------------------------------------

    def next_delay(self, t: PollTrack) -> float:
        """Seconds from now to the next poll of the job tracked by `t`.

        When `t.wake` is set afterwards, the job may be polled sooner once the run sees its
        next completion: ask again then.
        """
        now = self.clock()
        t.wake = False
        queued = t.last_poll is not None and t.queued_at == t.last_poll and t.position > 0
        if queued:
            blocked = self._queue_turn(t, now)
            if blocked is not None:
                return blocked
        if t.polls == 0 and (not len(self._runs) or t.start_hi is None):
            return 0.0  # nothing known about this job: ask at once (instant jobs cost nothing)
        if not len(self._runs) or t.start_hi is None or t.start_lo is None:
            t.wake = True  # the first completion teaches what to expect
            if not queued:
                return self._blind(t, now)
            # nothing to go by: back off geometrically; a job deep in the queue backs off faster
            delay = max(self.min_delay, (now - t.submitted) * self.GROWTH)
            delay *= min(t.position, self.QUEUE_BACKOFF)
            return self._clamp(min(delay, self.prior / 10))
        step = self._step()
        first = t.start_lo + self._runs.quantile(0.0)
        last = t.start_hi + self._run_hi()
        if now >= last and (t.last_poll is None or t.last_poll < last):
            return 0.0
        if now > last:  # overdue: back off
            return self._clamp(max(step, (now - last) * self.TAIL), step)
        after = now if t.last_poll is None else max(now, t.last_poll + step * 0.5)
        if step <= self.STEP_FLOOR:  # (nearly) fixed durations: ask at the usual one, then often
            at = max(after, t.start_hi + self._runs.quantile(0.5))
        else:  # the grid ends at `last`: the first poll lands as late as the step allows
            at = max(first, after)
            at = last - math.floor((last - at) / step) * step
        delay = at - now
        # finer than this job's own submit round trip, a plan is noise: ask now
        return 0.0 if delay <= t.submitted - t.sent else min(self.max_delay, delay)

    def _queue_turn(self, t: PollTrack, now: float) -> float | None:
        """Plan a job last seen in_queue from the completions seen since (None: plan as usual).

        Its turn comes after `position` completions: once that many jobs of the run are seen
        to have ended after that poll, it started no later than the last of them. Before,
        while jobs of the run are running (their completions are what moves it), it need not
        be polled: it waits for the next completion, at most `max_delay` after its last poll
        and no later than the end of its window predicted from the rate of completions.
        """
        seen = self._completions - t.done_before
        if seen >= t.position:
            recent = list(self._finishes)[-seen:]
            ends = sorted(f for f in recent if f > t.queued_at)
            if len(ends) >= t.position:
                t.start_lo = t.start_hi = ends[t.position - 1]
                return None
        if now - self._busy_at > self.max_delay:
            return None  # nothing of this run is running: someone else's jobs hold the queue
        t.wake = True
        at = t.last_poll + self.max_delay
        if t.start_hi is not None and len(self._runs):  # by then it should be over (slot rate)
            at = min(at, t.start_hi + self._run_hi())
        return max(0.0, at - now)

    def _blind(self, t: PollTrack, now: float) -> float:
        """Nothing learned yet: polls at min_delay x BLIND_RATIO ** (n + phase) after submit.

        Jobs submitted together get different phases, so together they are polled often
        (the first completion is seen early and re-plans them all) while each one is not.
        """
        elapsed = max(now - t.submitted, 0.0)
        n = 0.0
        if elapsed >= self.min_delay:
            n = math.floor(math.log(elapsed / self.min_delay, self.BLIND_RATIO) - t.phase) + 1.0
        at = self.min_delay * self.BLIND_RATIO ** (max(n, 0.0) + t.phase)
        return self._clamp(min(at - elapsed, self.prior / 10))

    def _run_hi(self) -> float:
        return self._runs.quantile(1.0)

    def _step(self) -> float:
        spread = self._run_hi() - self._runs.quantile(0.0)
        if len(self._runs) < self.FEW:  # a spread of one or two samples means little yet
            spread = max(spread, 0.25 * self._runs.quantile(0.5) * self.DENSE_SPLIT)
        return min(self.DENSE_MAX, max(self.STEP_FLOOR, spread / self.DENSE_SPLIT))

    def _slot(self) -> float | None:
        """Seconds between completions lately: how long one queue position takes to clear."""
        if len(self._done_at) < 4:
            return None
        span = self._done_at[-1] - self._done_at[0]
        return span / (len(self._done_at) - 1) if span > 0 else None

    def _clamp(self, delay: float, floor: float | None = None) -> float:
        return min(self.max_delay, max(self.min_delay if floor is None else floor, delay))
