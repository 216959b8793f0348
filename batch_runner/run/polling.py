"""When to poll a job: learned durations, the queue's drain rate, per-job phases (no I/O).

Model. A plan needs to know when a job will be done, counted from its submit. The server
says so itself: every job seen completed reports its duration (created -> finished, queue
wait included). Durations are estimated from a bounded sample of the run's jobs taken by
submit (`durations.Survival`, product-limit over the done and the still running), so the
quick jobs that finish first do not make everyone look quick, and the jobs that happened to
finish last do not skew it either. While the API reports a queue, the last WINDOW
durations are used instead (a queue that builds up changes what "normal" is faster than a
run-long sample follows). A job seen leaving the queue (`in_queue`, then `in_progress`) is
timed from its start instead, with the running times of such jobs.

Plan. One poll is worth `budget` seconds of detection delay: for the estimated distribution,
`durations.schedule` finds the poll ages (after submit) that minimise polls + delay / budget
per job, exactly. The budget is the least (at most BUDGET) whose schedule keeps the run
within its request bound, half of what a 2-s /status poller would ask for these durations
and at most REQUEST_CAP a job (`_worth`): long jobs leave requests to spend on earlier
detection, which keeps the slots busy; polls spent above the bound so far are paid back.
Schedules are computed again at most every REPLAN seconds, one per phase
bucket (budgets a little apart, each job shifted a little by its phase: jobs submitted
together do not ask at the same moment, the API sees a smooth rate); a decision is a lookup
of the next age in the job's schedule, so its cost does not grow with the jobs in flight. A
poll made nearer to a scheduled age than to the one before stands for it (a schedule that
moved does not cost two polls). Past the longest duration seen, a job waits sqrt(2 BUDGET /
hazard), the hazard being the run's completion rate over the jobs in flight (early in a run,
when only the quick ones are done, that is the hazard at the age of the rest), at most REL x
its age.

Queue. A poll that sees `in_queue` at position p bounds the next one: the job cannot start
before p positions have drained. The drain rate (positions per second) is measured from two
positions of the same job; before that, from the rate at which jobs of this run complete.

Before anything is learned, the first PROBES jobs of the run (and one more each time the
jobs waiting double from PROBE_FROM) poll at once and then on a doubling grid (zero-latency
jobs cost one poll); the others wait for the first duration
(`wake`: the caller sleeps until `learned` turns true, or max_delay x LATE to twice that,
then asks again; those already overdue are spread over a short WAVE). That happens once per
run, not per completion: no completion re-plans other jobs. A first poll, planned at submit,
is checked against the latest plan when it falls due (`recheck`): one lookup, by the job
itself, never a wave of re-plans.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from batch_runner.run.durations import Survival, Window, schedule, worth


@dataclass(slots=True)
class _Plan:
    """Schedules made from one estimate of the durations (see `PollPlanner._schedule`)."""

    version: int  # the window's when made
    size: int  # its length then
    when: float
    values: list[float]  # the durations planned with, sorted
    budget: float  # seconds of delay one poll is worth for them
    ages: dict[int, list[float]] = field(default_factory=dict)  # phase bucket -> poll ages


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
    odd_status: str | None = None  # the last status seen, when it was one nobody documents
    gone: bool = False  # `finished`: no longer counted in flight
    duration: float | None = None  # the server's, once it completed
    sampled: bool = False  # one of the jobs the run's durations are estimated from


class PollPlanner:
    """Poll times for every job of a run (see the module docstring)."""

    WINDOW = 128  # recent durations only: queue depth changes what "normal" is
    FEW = 4  # durations (completions) needed before the sample (the hazard) is used
    # seconds of detection delay one poll is worth (see durations.schedule); at 1.25 rather
    # than 1 a run stays within half the 2-second poller's requests and 1.5 x the least
    # possible at every latency of benchmark 6 (replayed: 3.55-3.57 req/job at 5-10 s, 4.3 at
    # 20-40 s), for about 0.1 s more median delay
    BUDGET = 1.25
    # ... at most: once durations are known, the least worth in BUDGETS whose schedule keeps
    # the run within the request bound (`_worth`): SHARE x what a /status poller every
    # POLLER_EVERY s asks (the official CLI: submit, /status until done, /result, the file)
    # and at most REQUEST_CAP per job, less SLACK (what learning costs beyond the plans);
    # each job asks OWN requests besides its polls. Replayed (session 8): at 8-16 s the bound
    # leaves room (a worth of ~0.3-0.6 s); at 5-10 s it does not (1.25 s, as before)
    SHARE, POLLER_EVERY, REQUEST_CAP, SLACK, OWN = 0.5, 2.0, 4.5, 0.3, 2
    BUDGETS = (0.25, BUDGET)
    PAYBACK = 0.5  # polls spent above the bound so far lower it, to at most this x itself
    SPREAD = 0.5  # the budget varies ± half this by the job's phase (no waves) ...
    BUCKETS = 4  # ... in this many steps: one schedule each
    STAGGER = 0.005  # within a bucket, a schedule shifts by up to this x its first age
    QUEUE_MEMORY = 2.0  # a queue seen within this x the longest duration: plan with the window
    REPLAN = 0.5  # seconds: schedules are computed again at most this often
    SAMPLE, POINTS = 256, 64  # jobs sampled for their durations; values a schedule is made of
    HORIZON = 4.0  # sampled jobs done longer ago than this x the longest duration are dropped
    REL = 0.3  # past the learned durations the gap is this fraction of the job's age ...
    STEP_FLOOR = 0.02  # no gap is shorter than this
    TAIL = 0.5  # ... or this fraction of the overrun, if larger
    WAVE, WAVE_MAX = 0.1, 1.5  # blind jobs overdue once a duration is known: spread over
    # this x the median duration, at most WAVE_MAX seconds
    PROBES = 4  # jobs that poll blind to learn the first durations; and, while nothing is
    PROBE_FROM = 64  # learned, the jobs numbered 64, 128, 256, ... (many waiting: learn sooner)
    BLIND_RATIO = 2.0  # probes poll at min_delay x BLIND_RATIO ** (n + phase) after submit
    LATE = 2.0  # the others, waiting for the probes, first ask LATE to 2 x LATE x max_delay
    PHASE = 0.6180339887  # golden ratio: the phases of successive jobs spread evenly
    TIGHT = 0.1  # a start known within this fraction of the run teaches its running time
    QUEUE_SLACK = 0.25  # a queued job may start this fraction earlier than the rate says
    RECHECK_SLACK = 0.05  # s: a first poll due this soon by the latest plan is made (`recheck`)

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
        self._durations = Window(self.WINDOW)
        self._runs = Window(self.WINDOW)  # running times of jobs seen leaving the queue
        self._drain = Window(self.WINDOW)  # queue positions cleared per second
        self._done_at: deque[float] = deque(maxlen=self.WINDOW)  # when completions were seen
        self._sample = Survival(self.SAMPLE, self.POINTS)  # durations, from submit (unbiased)
        self._serial = 0
        self._in_flight = 0  # tracked jobs not yet `finished`
        self._spent, self._completions = 0, 0  # polls of the jobs seen completed; their count
        self._queue_seen = -math.inf  # when a job was last seen in_queue
        self.budget = self.BUDGET  # seconds of delay one poll is worth now (`_worth`)
        self._plans: dict[tuple[int, bool], _Plan] = {}  # (window, sampled): see `_schedule`

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
            probe=self._probe(),
            phase=(self._serial * self.PHASE) % 1.0,
        )
        self._serial += 1
        self._in_flight += 1
        if not t.resumed:
            t.sampled = self._sample.add(t)
        return t

    def _probe(self) -> bool:
        """Whether the next job polls blind to learn the first durations: the first PROBES,
        and while nothing is learned one more each time the jobs waiting double from
        PROBE_FROM (a few polls, against the delay of every job done before a duration is
        known: replayed at 1,500 in flight, 8-16 s, the first completion was seen at ~14 s)."""
        n = self._serial
        if n < self.PROBES:
            return True
        return not self.learned and n >= self.PROBE_FROM and n & (n - 1) == 0

    def finished(self, t: PollTrack) -> None:
        """The job tracked by `t` is no longer polled (done, failed, given up): once per track."""
        if not t.gone:
            t.gone = True
            self._in_flight -= 1

    def seen(self, t: PollTrack, status: str, queue_position: int | None) -> None:
        """Record one poll's answer (`in_queue` or `in_progress`)."""
        now = self.clock()
        t.polls += 1
        t.last_poll = now
        if status != "in_queue":
            if t.queued_at is not None and t.started is None:  # it left the queue since
                t.started, t.start_error = (t.queued_at + now) / 2, (now - t.queued_at) / 2
            t.queued_at, t.not_before = None, -math.inf
            return
        self._queue_seen = now
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
        self._spent += t.polls + 1  # (this poll too)
        self._completions += 1
        if duration is None or not math.isfinite(duration) or duration < 0:
            if t.resumed:
                return
            duration = now - t.submitted  # what this process saw: an upper bound
        self._durations.add(duration)
        if not t.resumed:
            t.duration = duration
            if t.sampled:
                self._sample.completed()
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
            # the others wait for the probes (`wake`); should none of them teach anything
            # (failures), they ask now and then: first at LATE x max_delay, then every max_delay
            first = t.submitted + self.max_delay * self.LATE * (1 + t.phase)
            return max(self.min_delay, first - now if first > now else self.max_delay)
        # a learned plan is kept however far off; a queue estimate waits max_delay at most
        at = max(self._planned(t), min(t.not_before, now + self.max_delay))
        if was_blind and at < now:  # every blind job re-plans now: spread their polls
            at = now + t.phase * min(self.WAVE_MAX, self.WAVE * self._durations.quantile(0.5))
        return max(0.0, at - now)

    def recheck(self, t: PollTrack) -> float:
        """Seconds a job's first poll, now due, should still wait by what the run knows now
        (0: ask now). That poll was planned at submit: early in a run, when only the quick
        jobs are known, too early (seen: a third of a poll per job spent that way). Only the
        first poll, and not while a queue is seen (a queue estimate moves with the clock)."""
        if t.polls or t.resumed or t.wake or not self.learned or t.not_before > -math.inf:
            return 0.0
        now = self.clock()
        if not self._sampled(self._durations, now):
            return 0.0
        later = self._planned(t) - now
        return later if later > self.RECHECK_SLACK else 0.0

    def _planned(self, t: PollTrack) -> float:
        """When the job should next be polled (clock time), from the learned durations."""
        window, anchor = self._durations, t.submitted
        if t.started is not None and len(self._runs):  # it left the queue: time its run
            window, anchor = self._runs, t.started
        ages = self._schedule(window, t.phase)
        last = t.last_poll
        # the first scheduled age not yet asked (a blind or queued job joins it where it is)
        after = -math.inf if last is None else last + self.STEP_FLOOR - anchor - t.margin
        k = bisect_right(ages, after)
        if k < len(ages) and last is not None:
            # the schedule may have changed since the last poll: one made nearer to this age
            # than to the one before, and less than a poll's worth of delay before it, stands
            # for it (no two polls where the plan wants one; yet a job asked well before the
            # plan's first age, say a blind one, is not sent on to the second)
            before = ages[k - 1] if k else 0.0
            if ages[k] - after < min((ages[k] - before) / 2, self.budget):
                k += 1
        if k < len(ages):
            return anchor + ages[k] + t.margin + self._stagger(t, ages)
        # older than every duration seen: early in a run only the quick ones are known (most
        # jobs are this far); later, a rare straggler
        age = last - anchor  # (last is set: `after` is finite when no age is left)
        overdue = max(self.REL * age, self.TAIL * (age - ages[-1]))
        hazard = self._hazard()
        if hazard is not None:  # gaps of sqrt(2 budget / hazard): one poll per budget's delay
            overdue = min(overdue, math.sqrt(2 * self.BUDGET / hazard))
        return last + min(self.max_delay, max(self.STEP_FLOOR, overdue))

    def _stagger(self, t: PollTrack, ages: list[float]) -> float:
        """Jobs of one schedule submitted together do not ask at one moment: each goes up to
        STAGGER x its first age later (by its phase within the bucket; never earlier, which
        would cost a second poll where every job takes the same time)."""
        return (t.phase * self.BUCKETS) % 1.0 * self.STAGGER * ages[0]

    def _hazard(self) -> float | None:
        """How likely a job still running is to finish, per second: the run's recent
        completion rate over the jobs in flight (for one batch of jobs submitted together
        this is the hazard at their age; later, about 1 / the mean duration)."""
        done = self._done_at
        if len(done) < self.FEW or done[-1] <= done[0] or self._in_flight <= 0:
            return None
        return (len(done) - 1) / (done[-1] - done[0]) / self._in_flight

    def _schedule(self, window: Window, phase: float) -> list[float]:
        """The poll ages for jobs of this phase, from a plan made again at most every REPLAN
        seconds, or when the window has doubled since: a decision is a lookup."""
        bucket = min(int(phase * self.BUCKETS), self.BUCKETS - 1)
        now = self.clock()
        sampled = self._sampled(window, now)
        key = (id(window), sampled)
        plan = self._plans.get(key)
        version = self._version(window)
        fresh = plan is not None and (
            plan.version == version
            or (now - plan.when < self.REPLAN and len(window) < 2 * plan.size)
        )
        if not fresh:
            values = self._values(window, sampled)
            if window is self._durations:  # the running times of started jobs share its worth
                self.budget = self._worth(values)
            plan = self._plans[key] = _Plan(version, len(window), now, list(values), self.budget)
        ages = plan.ages.get(bucket)
        if ages is None:
            spread = 1 + self.SPREAD * ((bucket + 0.5) / self.BUCKETS - 0.5)
            ages = plan.ages[bucket] = schedule(plan.values, plan.budget * spread)
        return ages

    def _worth(self, values: list[float]) -> float:
        """Seconds of delay one poll is worth for these durations (sorted): the least (the
        earliest detection, the busiest slots) whose schedule keeps the run within the
        request bound. Long jobs leave room (a 2-s poller asks about duration / 2 times), short
        ones little. The polls the completed jobs took above the bound (learning, queues,
        stragglers) are paid back by the next ones; those below it are spent on them."""
        if not values:
            return self.BUDGET
        poller = 3 + sum(max(1, math.ceil(v / self.POLLER_EVERY)) for v in values) / len(values)
        most = min(self.SHARE * poller, self.REQUEST_CAP) - self.SLACK - self.OWN
        if self._completions:
            most = max(self.PAYBACK * most, 2 * most - self._spent / self._completions)
        return worth(values, most, *self.BUDGETS)

    def _version(self, window: Window) -> int:
        return window.version + (self._sample.version if window is self._durations else 0)

    def _sampled(self, window: Window, now: float) -> bool:
        """Whether to plan with the run's sample (durations from submit, not biased towards the
        quick ones while the slow ones still run: once FEW are known), not the recent window.
        While jobs wait in the queue, the window: the queue changes what "normal" is."""
        if window is not self._durations or self._sample.events < self.FEW:
            return False
        return now - self._queue_seen >= self.QUEUE_MEMORY * window.values[-1]

    def _values(self, window: Window, sampled: bool) -> list[float]:
        """The durations to plan with, sorted (see `_sampled`)."""
        if sampled:
            now = self.clock()
            self._sample.forget_before(now - self.HORIZON * window.values[-1], self.SAMPLE // 4)
            values = self._sample.values(now)
            if values:
                return values
        return window.values

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
