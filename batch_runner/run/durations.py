"""How long jobs take, learned as a run goes, and the poll ages that are best for that (no I/O).

`Window`: the last durations seen, sorted. `Survival`: a bounded sample of the run's jobs by
submit (every `stride`-th), each done (its duration) or still running (at least its age):
the product-limit (Kaplan-Meier) estimate over it is not biased towards quick jobs early in a
run, when only they have finished, nor by which jobs happened to finish last. `schedule`: the
poll ages minimising polls + delay / budget for a distribution given as equal-weight values.
Every cost here is bounded by the sample's size, never by the number of jobs in flight.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from typing import Protocol


class Window:
    """The last `size` values, kept sorted for quantiles (cost bounded by `size`)."""

    def __init__(self, size: int):
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._size = size
        self.version = 0  # counts the values added

    def add(self, value: float) -> None:
        self.version += 1
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


class Sampled(Protocol):
    """What the sample reads of a job's track."""

    submitted: float
    duration: float | None  # set once it completed
    gone: bool  # no longer polled
    last_poll: float | None  # when a poll last found it not done


class Survival:
    """Every `stride`-th job of the run, kept while it can still teach something."""

    def __init__(self, size: int, points: int):
        self._size = size  # at most this many jobs (the stride doubles to stay within)
        self._points = points  # values handed to `schedule`
        self._jobs: list[Sampled] = []
        self._stride = 1
        self._serial = 0
        self.version = 0  # counts the completions of sampled jobs
        self.events = 0  # ... of those still in the sample

    def add(self, job: Sampled) -> bool:
        """Offer a new job; True when it is sampled (then report its completion)."""
        self._serial += 1
        if self._serial % self._stride:
            return False
        self._jobs.append(job)
        if len(self._jobs) > self._size:
            self._thin()
        return True

    def completed(self) -> None:
        self.version += 1
        self.events += 1

    def _thin(self) -> None:
        """Keep one job in two (the oldest half of the jobs it holds first go when done)."""
        self._stride *= 2
        self._jobs = self._jobs[::2]
        self.events = sum(j.duration is not None for j in self._jobs)

    def forget_before(self, horizon: float, keep: int) -> None:
        """Drop finished jobs submitted before `horizon` (they describe an older part of the
        run), keeping the `keep` newest jobs whatever their age (a slow run learns from them)."""
        jobs = self._jobs
        cut = min(bisect_left([j.submitted for j in jobs], horizon), max(len(jobs) - keep, 0))
        old = [j for j in jobs[:cut] if j.duration is None and not j.gone]  # still running
        if cut:
            self._jobs = old + jobs[cut:]
            self.events = sum(j.duration is not None for j in self._jobs)

    def values(self, now: float) -> list[float]:
        """`points` equal-weight durations (quantiles of the product-limit estimate, given
        that the job finishes by the longest duration seen); [] with no duration seen."""
        times = []
        for j in self._jobs:
            if j.duration is not None:
                times.append((j.duration, 0))  # an event sorts before a censoring at one time
            elif not j.gone and j.last_poll is not None:
                # known running at its last poll, no later: a job done but not yet seen
                # done is not "still running" (that would lengthen every estimate by the
                # detection delay)
                times.append((max(j.last_poll - j.submitted, 0.0), 1))
        times.sort()
        at_risk, alive = len(times), 1.0
        support: list[tuple[float, float]] = []
        for value, censored in times:
            if not censored:
                mass = alive / at_risk
                alive -= mass
                support.append((value, mass))
            at_risk -= 1
        if not support:
            return []
        total = 1.0 - alive
        out, cum, k = [], 0.0, 1
        for value, mass in support:  # the upper end of each of `points` equal-mass bins
            cum += mass / total
            while k <= self._points and cum >= k / self._points - 1e-12:
                out.append(value)
                k += 1
        while len(out) < self._points:
            out.append(support[-1][0])
        return out


def schedule(values: list[float], budget: float) -> list[float]:
    """The poll ages that are best for a job whose duration is one of the sorted `values`.

    Exact, by dynamic programming over the distinct values (a poll between two of them only
    adds delay): it minimises, per job, the polls made plus the detection delay / `budget`
    (one poll is worth `budget` seconds of delay). A poll at age p_j after one at p_i is made by
    every job longer than p_i and finds those in (p_i, p_j] done, p_j - v late. The last age
    is the longest value.

    The cost of reaching p_j from p_i is a_i - p_j * b_i plus a term of j alone, a line in p_j
    with a slope -b_i that falls as i grows, and the p_j grow: the best i for each j is read
    off the lower envelope of those lines (the convex hull trick), so the whole programme is
    linear in the distinct values (about 0.1 ms at 64).
    """
    ages: list[float] = []
    counts: list[int] = []
    for v in values:
        if ages and v == ages[-1]:
            counts[-1] += 1
        else:
            ages.append(v)
            counts.append(1)
    n, m = len(values), len(ages)
    if not m:
        return []
    per_delay = 1.0 / (budget * n)
    came_from = [-1] * m
    # lines (a_i, b_i, i) of the lower envelope for the ages still to come, steepest last;
    # a_i = best_i + (jobs left after p_i) / n + per_delay * (sum of values up to p_i),
    # b_i = per_delay * (values up to p_i)
    hull: list[_Line] = []
    head = 0  # lines before it are beaten for every later (larger) age
    done, total = 0, 0.0
    for j in range(m):
        at = ages[j]
        done += counts[j]
        total += counts[j] * at
        own = per_delay * (at * done - total)  # the delay of the jobs done by p_j, from 0
        best, arg = 1.0 + own, -1  # its first poll
        while head + 1 < len(hull) and _at(hull[head + 1], at) <= _at(hull[head], at):
            head += 1
        if head < len(hull):
            cost = _at(hull[head], at) + own
            if cost < best:
                best, arg = cost, hull[head][2]
        came_from[j] = arg
        line = (best + (n - done) / n + per_delay * total, per_delay * done, j)
        while len(hull) - head >= 2 and _useless(hull[-2], hull[-1], line):
            hull.pop()
        hull.append(line)
    out, j = [], m - 1
    while j >= 0:
        out.append(ages[j])
        j = came_from[j]
    return out[::-1]


def polls(ages: list[float], values: list[float]) -> float:
    """Polls per job made at the poll `ages` when a duration is one of the sorted `values`
    (a poll is made by every job longer than the age before it)."""
    n = len(values)
    if not n or not ages:
        return 0.0
    return sum(n - bisect_right(values, age) for age in [-math.inf, *ages[:-1]]) / n


def worth(values: list[float], most: float, low: float, high: float, steps: int = 10) -> float:
    """The least budget in [low, high] (seconds of delay one poll is worth) whose schedule
    makes at most `most` polls per job for the sorted `values` (more polls, less delay: the
    polls fall as the budget grows); `high` when none does. By bisection, `steps` schedules."""
    if not values or polls(schedule(values, low), values) <= most:
        return low
    for _ in range(steps):
        mid = math.sqrt(low * high)
        if polls(schedule(values, mid), values) <= most:
            high = mid
        else:
            low = mid
    return high


_Line = tuple[float, float, int]  # (a_i, b_i, i): the cost a_i - x * b_i of polling at x after i


def _at(line: _Line, x: float) -> float:
    return line[0] - x * line[1]


def _useless(first: _Line, middle: _Line, last: _Line) -> bool:
    """Whether `middle` is nowhere below both others (slopes -b falling from first to last)."""
    (a1, b1, _), (a2, b2, _), (a3, b3, _) = first, middle, last
    # middle and last cross at x23 = (a3 - a2) / (b3 - b2); first and middle at x12: middle
    # is on the envelope only between them, so it goes when x23 <= x12
    return (a3 - a2) * (b2 - b1) <= (a2 - a1) * (b3 - b2)
