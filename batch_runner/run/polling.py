"""When to poll a job: learned durations, the queue's drain rate, per-job phases (no I/O).

Model. A plan needs to know when a job will be done, counted from its submit. The server
says so itself: every job seen completed reports its duration (created -> finished, queue
wait included), so a window of the last WINDOW durations, kept sorted, is the distribution
of "done this long after submit", whatever mix of queue wait and running time is behind it.
A job seen leaving the queue (`in_queue`, then `in_progress`) is timed from its start
instead, with the running times of such jobs (learned when the start was seen closely).

Plan. One poll is worth BUDGET seconds of detection delay: the next poll of a job still
running at age `a` goes out when the durations above `a` would have accrued, on average,
BUDGET seconds of unnoticed completion (`_accrued`). Where durations are dense, polls come
often; in a sparse tail, seldom; the expected detection delay is about BUDGET x the polls.
A job's first budget varies with its phase (golden-ratio steps from job to job), so jobs
submitted together do not ask at the same moment: the API sees a smooth rate, not waves.
Past every duration seen, the gaps grow with the job's age (REL).

Queue. A poll that sees `in_queue` at position p bounds the next one: the job cannot start
before p positions have drained. The drain rate (positions per second) is measured from two
positions of the same job; before that, from the rate at which jobs of this run complete.

Before anything is learned, the first PROBES jobs of the run poll at once and then on a
doubling grid (zero-latency jobs cost one poll); the others wait for the first duration
(`wake`: the caller sleeps until `learned` turns true or a sparse blind delay passes, then
asks again; those already overdue are spread over a short WAVE). That happens once per run,
not per completion: no completion re-plans other jobs, and a decision costs at most a scan
of the fixed-size window, whatever the number of jobs in flight.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class _Window:
    """The last `size` values, kept sorted for quantiles (cost bounded by `size`)."""

    def __init__(self, size: int):
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._size = size

    def add(self, value: float) -> None:
        if len(self._recent) == self._size:
            del self._sorted[bisect_left(self._sorted, self._recent.popleft())]
        self._recent.append(value)
        insort(self._sorted, value)

    def __len__(self) -> int:
        return len(self._sorted)

    @property
    def values(self) -> list[float]:
        return self._sorted

    def quantile(self, q: float) -> float:
        """Linear interpolation between the order statistics (q in [0, 1])."""
        values = self._sorted
        x = min(max(q, 0.0), 1.0) * (len(values) - 1)
        i = int(x)
        if i + 1 >= len(values):
            return values[-1]
        return values[i] + (values[i + 1] - values[i]) * (x - i)


def _accrued(values: list[float], age: float, budget: float, share: float) -> float | None:
    """When to poll a job still running at `age`, from the sorted durations `values`.

    The age at which the durations above `age` will have accrued, on average, `budget`
    seconds of unnoticed completion: the smallest tau with sum over v in (age, tau] of
    (tau - v) = budget x (the number above `age`). Where durations are dense polls come
    often, in a sparse tail seldom: near-optimal when one poll is worth `budget` seconds of
    delay (gaps of sqrt(2 budget / hazard)). At most the duration below which `share` of
    those above `age` lie: a cluster of equal durations is asked at once, not `budget` late.
    None: no duration is above `age`. Cost: at most the window's length.
    """
    i = bisect_right(values, age)
    above = len(values) - i
    if not above:
        return None
    cap = values[i + max(0, math.ceil(share * above) - 1)]
    target, total = budget * above, 0.0
    for m, v in enumerate(values[i:], 1):
        total += v
        tau = (target + total) / m  # m durations below it (it is never below the m-th)
        after = values[i + m] if i + m < len(values) else math.inf
        if tau <= after:
            return min(tau, cap)
        if after >= cap:  # tau lies beyond the cap
            return cap
    return cap  # not reached


@dataclass(slots=True)
class PollTrack:
    """What the polls of one job have shown (monotonic seconds)."""

    submitted: float  # its submit was answered (or it was picked up on resume)
    # the submit's round trip: the job was created within it, so a poll aimed at a learned
    # duration goes out this much later (a poll that arrives a hair early costs a back-off)
    margin: float = 0.0
    resumed: bool = False  # submitted by an earlier process: its age is unknown
    probe: bool = False  # one of the first jobs of the run: polled to learn durations
    phase: float = 0.0  # in [0, 1): staggers the polls of jobs submitted together
    polls: int = 0
    last_poll: float | None = None
    queued_at: float | None = None  # the last poll that saw it in_queue ...
    position: int = 0  # ... and its queue position then
    not_before: float = -math.inf  # the queue: it cannot be done before this
    started: float | None = None  # seen leaving the queue: its run started about then ...
    start_error: float = math.inf  # ... give or take this
    wake: bool = False  # the plan is blind: ask again once `learned` turns true
    planned: bool = False  # its first poll from learned durations is set: later ones step


class PollPlanner:
    """Poll times for every job of a run (see the module docstring)."""

    WINDOW = 128  # recent durations only: queue depth changes what "normal" is
    FEW = 4  # with fewer durations than this, their spread is widened by WIDEN
    WIDEN = 0.5  # ... to ± this fraction of the median
    BUDGET = 0.5  # seconds of detection delay one poll is worth (see `_accrued`)
    SPREAD = 1.0  # the first poll's budget varies ± half this by the job's phase (no waves)
    SHARE = 0.8  # a poll waits for at most this share of the durations still ahead of a job
    REL = 0.3  # past the learned durations the gap is this fraction of the job's age ...
    STEP_FLOOR = 0.02  # no gap is shorter than this
    TAIL = 0.5  # ... or this fraction of the overrun, if larger
    WAVE, WAVE_MAX = 0.1, 1.5  # blind jobs overdue once a duration is known: spread over
    # this x the median duration, at most WAVE_MAX seconds
    PROBES = 4  # jobs that poll blind to learn the first durations
    BLIND_RATIO = 2.0  # probes poll at min_delay x BLIND_RATIO ** (n + phase) after submit
    LATE_BLIND, LATE_RATIO = 32.0, 4.0  # the others, waiting for the probes, far more sparsely
    PHASE = 0.6180339887  # golden ratio: the phases of successive jobs spread evenly
    TIGHT = 0.1  # a start known within this fraction of the run teaches its running time
    QUEUE_SLACK = 0.25  # a queued job may start this fraction earlier than the rate says

    def __init__(
        self,
        *,
        min_delay: float = 0.25,
        max_delay: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.clock = clock
        self._durations = _Window(self.WINDOW)
        self._runs = _Window(self.WINDOW)  # running times of jobs seen leaving the queue
        self._drain = _Window(self.WINDOW)  # queue positions cleared per second
        self._done_at: deque[float] = deque(maxlen=self.WINDOW)  # when completions were seen
        self._serial = 0

    @property
    def learned(self) -> bool:
        """A duration is known: blind plans (`wake`) can be replaced by real ones."""
        return len(self._durations) > 0

    # ---- tracking ----------------------------------------------------------------------------

    def track(self, sent: float | None = None, answered: float | None = None) -> PollTrack:
        """A track for a job whose submit left at `sent` and was answered at `answered`.

        Without them (a job submitted by an earlier process) its age is unknown.
        """
        now = self.clock()
        submitted = now if answered is None else answered
        if sent is not None:  # the job exists from some point of the round trip: its middle
            submitted = (sent + submitted) / 2
        t = PollTrack(
            submitted=submitted,
            margin=max(0.0, submitted - sent) if sent is not None else 0.0,
            resumed=sent is None,
            probe=self._serial < self.PROBES,
            phase=(self._serial * self.PHASE) % 1.0,
        )
        self._serial += 1
        return t

    def seen(self, t: PollTrack, status: str, queue_position: int | None) -> None:
        """Record one poll's answer (`in_queue` or `in_progress`)."""
        now = self.clock()
        t.polls += 1
        t.last_poll = now
        if status != "in_queue":
            if t.queued_at is not None and t.started is None:  # it left the queue since
                t.started, t.start_error = (t.queued_at + now) / 2, (now - t.queued_at) / 2
                t.planned = not len(self._runs)  # plan again from its start
            t.queued_at, t.not_before = None, -math.inf
            return
        position = max(queue_position or 0, 0)
        if t.queued_at is not None and position < t.position and now > t.queued_at:
            self._drain.add((t.position - position) / (now - t.queued_at))
        t.queued_at, t.position = now, position
        rate = self._drain_rate()
        if rate is not None and position:
            t.not_before = now + position / rate * (1 - self.QUEUE_SLACK)

    def completed(self, t: PollTrack, duration: float | None) -> None:
        """Learn from a job seen completed; `duration` is the server's created -> finished."""
        now = self.clock()
        self._done_at.append(now)
        if duration is None or not math.isfinite(duration) or duration < 0:
            if t.resumed:
                return
            duration = now - t.submitted  # what this process saw: an upper bound
        self._durations.add(duration)
        run = t.submitted + duration - t.started if t.started is not None else -1.0
        if run >= 0 and t.start_error <= self.TIGHT * max(run, 1.0):
            self._runs.add(run)

    # ---- planning ----------------------------------------------------------------------------

    def next_delay(self, t: PollTrack) -> float:
        """Seconds from now to the next poll of the job tracked by `t`.

        When `t.wake` is set afterwards the plan is blind: ask again once `learned` is true.
        """
        now = self.clock()
        was_blind, t.wake = t.wake, False
        if t.polls == 0 and (t.resumed or (t.probe and not self.learned)):
            return 0.0  # its age is unknown / it is what the run learns from: ask at once
        if not self.learned:
            t.wake = True
            if t.probe:
                return self._blind(t, now, self.min_delay, self.BLIND_RATIO)
            return self._blind(t, now, self.min_delay * self.LATE_BLIND, self.LATE_RATIO)
        # a learned plan is kept however far off; a queue estimate waits max_delay at most
        at = max(self._planned(t), min(t.not_before, now + self.max_delay))
        if was_blind and at < now:  # every blind job re-plans now: spread their polls
            at = now + t.phase * min(self.WAVE_MAX, self.WAVE * self._median())
        return max(0.0, at - now)

    def _planned(self, t: PollTrack) -> float:
        """When the job should next be polled (clock time), from the learned durations."""
        window, anchor = self._durations, t.submitted
        if t.started is not None and len(self._runs):  # it left the queue: time its run
            window, anchor = self._runs, t.started
        values = self._values(window)
        last = t.last_poll
        if not t.planned or last is None:  # (a resumed job was polled at once: not planned)
            t.planned = True
            budget = self.BUDGET * (1 + self.SPREAD * (t.phase - 0.5))  # no waves
            first = anchor + (_accrued(values, -1.0, budget, self.SHARE) or 0.0) + t.margin
            if last is None or first > last + self.STEP_FLOOR:
                return first
        age = last - anchor
        at = _accrued(values, age, self.BUDGET, self.SHARE)
        # none left above its age (or only the first ones are known, early in a run): back off
        overdue = max(self.REL * age, self.TAIL * (age - values[-1]))
        gap = overdue if at is None else at - age
        return last + min(self.max_delay, max(self.STEP_FLOOR, gap))

    def _median(self) -> float:
        values = self._values(self._durations)
        return values[len(values) // 2]

    def _values(self, window: _Window) -> list[float]:
        """The durations to plan with, sorted; a few only say where the middle is (± WIDEN)."""
        if len(window) >= self.FEW:
            return window.values
        mid = window.quantile(0.5)
        return [mid * (1 + self.WIDEN * (k / 4 - 1)) for k in range(9)]

    def _blind(self, t: PollTrack, now: float, base: float, ratio: float) -> float:
        """Nothing learned yet: polls at base x ratio ** (n + phase) after the submit."""
        elapsed = max(now - t.submitted, 0.0)
        n = 0.0
        if elapsed >= base:
            n = math.floor(math.log(elapsed / base, ratio) - t.phase) + 1.0
        at = base * ratio ** (max(n, 0.0) + t.phase)
        return min(self.max_delay, max(self.min_delay, at - elapsed))

    def _drain_rate(self) -> float | None:
        """Queue positions cleared per second: measured, else the run's completion rate."""
        if len(self._drain) >= 2:
            return self._drain.quantile(0.5)
        done = self._done_at
        if len(done) >= 4 and done[-1] > done[0]:
            return (len(done) - 1) / (done[-1] - done[0])
        return None
