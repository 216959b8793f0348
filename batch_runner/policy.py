"""Retry classification, backoff and adaptive poll intervals: pure functions over data, no I/O.

What happens after a failed call (`classify`):

| op       | error                                                        | action    |
|----------|--------------------------------------------------------------|-----------|
| any      | AccountError (bad token, no credits)                         | STOP      |
| submit   | 429, 408, connection refused before sending (sent=False)     | RETRY     |
| submit   | 500/503 (or HTTP-200 500001) with an error body: not created | RETRY     |
| submit   | 502/504, 5xx without error body, timeout/drop after sending  | AMBIGUOUS |
| submit   | answer unreadable (bad_answer)                               | AMBIGUOUS |
| submit   | other 4xx (400, 403, 404, 422)                               | FAIL      |
| poll     | 429, 5xx, 408, dropped, timeout, unreadable/malformed answer | RETRY     |
| poll     | 404001 (request id unknown or expired)                       | EXPIRED   |
| poll     | unknown status, other 4xx                                    | FAIL      |
| cancel   | as poll                                                      |           |
| download | 403/404/410 on the file URL                                  | REFRESH   |
| download | truncated, dropped, timeout, 5xx, 429                        | RETRY     |
| download | host refused, too big, bad signature/name/URL, other 4xx     | FAIL      |
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
import time
from bisect import insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from batch_runner.errors import AccountError, ApiError, DownloadError, TransportError

RETRY_AFTER_CAP = 300.0  # a server asking for more than 5 minutes is probably wrong


class Action(StrEnum):
    RETRY = "retry"  # send the same call again after a delay
    AMBIGUOUS = "ambiguous"  # a submit may have created a (paid) job: the job becomes uncertain
    REFRESH = "refresh"  # fetch /result again for fresh file URLs, then download again
    EXPIRED = "expired"  # the API forgot the request id: the job fails with reason "expired"
    FAIL = "fail"  # permanent for this job
    STOP = "stop"  # permanent for the whole run (account)


@dataclass(frozen=True)
class Decision:
    """What to do after an error, why (`cause`, used to count retries), and a server-given delay."""

    action: Action
    cause: str
    delay: float | None = None


_RETRYABLE_GET = frozenset({"429", "5xx", "dropped", "timeout"})
_DOWNLOAD_RETRY = frozenset({"truncated", "dropped", "timeout", "5xx", "429"})


def _cause(error: ApiError) -> str:
    if error.kind:
        return error.kind
    if error.status is not None:
        return "5xx" if error.status >= 500 else "4xx"
    return "error"


def _classify_submit(error: ApiError) -> Action:
    kind, status = error.kind, error.status
    if isinstance(error, TransportError) and not error.sent:
        return Action.RETRY  # refused before the body left: nothing was created
    if kind == "429" or status == 408:
        return Action.RETRY
    if kind == "5xx":
        # a RunComfy error body on 500/503 means the server refused the job; 502/504 come from
        # a gateway that may have forwarded it, and a bare 5xx says nothing either way
        if error.error_code is not None and status not in (502, 504):
            return Action.RETRY
        return Action.AMBIGUOUS
    if kind in ("dropped", "timeout", "bad_answer", "unknown_status") or isinstance(
        error, TransportError
    ):
        return Action.AMBIGUOUS
    return Action.FAIL


def _classify_poll(error: ApiError) -> Action:
    kind = error.kind
    if kind == "expired" or error.error_code == 404001:
        return Action.EXPIRED
    if kind in _RETRYABLE_GET or error.status == 408:
        return Action.RETRY
    # the job exists (and may be paid for): a strange answer is worth asking again, a bounded
    # number of times, before giving the job up
    if kind == "bad_answer":
        return Action.RETRY
    return Action.FAIL


def _classify_download(error: ApiError) -> Action:
    kind = error.kind
    if kind == "expired_url" or error.status in (403, 404, 410):
        return Action.REFRESH
    if kind in _DOWNLOAD_RETRY:
        return Action.RETRY
    return Action.FAIL


def _classify_other(error: BaseException, op: str) -> Decision:
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        action = Action.AMBIGUOUS if op == "submit" else Action.RETRY
        return Decision(action, "timeout")
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return Decision(Action.STOP, "disk_full")
    if isinstance(error, OSError):
        return Decision(Action.FAIL, "io")
    return Decision(Action.FAIL, type(error).__name__)


def classify(error: BaseException, op: str) -> Decision:
    """Decide what to do after `error` from `op`: "submit", "poll", "cancel" or "download"."""
    if isinstance(error, AccountError):
        return Decision(Action.STOP, "account")
    if not isinstance(error, ApiError):
        return _classify_other(error, op)
    if op == "submit":
        action = _classify_submit(error)
    elif op == "download" or isinstance(error, DownloadError):
        action = _classify_download(error)
    elif op in ("poll", "cancel"):
        action = _classify_poll(error)
    else:
        raise ValueError(f"unknown operation {op!r}")
    delay = error.retry_after if action is Action.RETRY else None
    return Decision(action, _cause(error), delay)


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt))."""
    exponent = min(max(attempt, 0), 60)  # 2**60 already dwarfs any cap; avoids float overflow
    return rng.uniform(0.0, min(cap, base * 2.0**exponent))


def retry_delay(error: BaseException, attempt: int, rng: random.Random) -> float:
    """The backoff for `attempt`, but never sooner than a Retry-After the server asked for."""
    delay = backoff(attempt, rng=rng)
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after) and retry_after > 0:
        delay = max(delay, min(float(retry_after), RETRY_AFTER_CAP))
    return delay


class PollPlanner:
    """Adaptive poll intervals from the submit→completed durations seen so far.

    The first poll of a job (`elapsed` below FIRST_WINDOW) goes out at once before any
    observation, else at the expected earliest completion (q10), so instant jobs cost no
    waiting. Before any observation: then after 2x the elapsed time, at most `prior / 10`
    apart (slow jobs cost a poll every few seconds). With durations known (the last 16; q10,
    q90): dense polls across [q10, q90] (the width / 1.5, within [step, 2.5 s], so half of the
    completions are seen within ~1.2 s; the step is `min_delay`, less for jobs known to take
    under 2.5 s), then geometric back-off (the overrun) up to `max_delay`. A job still
    `in_queue` waits its queue (position x the recent time between completions, read from
    `clock`) plus the shortest duration seen. Feed it server-measured durations
    (`Poll.duration`) when available: durations measured at detection drift upward.
    """

    # tuned on a discrete-event model of issue 6 benchmark 3 (latency 4-8 s, capacity 16,
    # concurrency 32): ~0.6x the requests of 2-second polling, p50 detection ~1.2 s
    DENSE_MAX = 2.5  # p50 detection delay ≈ half the dense step
    DENSE_SPLIT = 1.5  # the dense step is the q10..q90 width over this
    LO, HI = 0.1, 0.9
    WINDOW = 16  # recent durations only: queue depth changes what "normal" is
    GROWTH = 2.0  # before any observation, the next poll comes after GROWTH x elapsed
    TAIL = 1.0  # past q90 the next poll comes after TAIL x the overrun (geometric)
    QUEUE_TRUST = 0.8  # fraction of the queue-drain estimate waited before polling again
    SHORT_STEP = 0.1  # short jobs: the dense step may shrink to this fraction of q10 ...
    STEP_FLOOR = 0.05  # ... but never below this (seconds)
    FIRST_WINDOW = 0.01  # a call this soon after the submit plans the job's first poll

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
        self._clock = clock
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []
        self._done_at: deque[float] = deque(maxlen=self.WINDOW)  # when completions were seen

    def observe_duration(self, seconds: float) -> None:
        """Learn one submit→completed duration."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        if len(self._recent) == self.WINDOW:
            self._sorted.remove(self._recent.popleft())
        self._recent.append(seconds)
        insort(self._sorted, seconds)
        self._done_at.append(self._clock())

    def _slot(self) -> float | None:
        """Seconds between completions lately: how long one queue position takes to clear."""
        if len(self._done_at) < 4:
            return None
        span = self._done_at[-1] - self._done_at[0]
        return span / (len(self._done_at) - 1) if span > 0 else None

    def _quantile(self, q: float) -> float:
        values = self._sorted
        return values[min(len(values) - 1, int(q * len(values)))]

    def _clamp(self, delay: float, floor: float | None = None) -> float:
        return min(self.max_delay, max(self.min_delay if floor is None else floor, delay))

    def next_delay(self, *, status: str, elapsed: float, queue_position: int | None) -> float:
        """Seconds to wait before the next poll of a job submitted `elapsed` seconds ago."""
        elapsed = max(0.0, elapsed)
        first = elapsed < self.FIRST_WINDOW  # a later call comes after a poll's round trip
        if not self._sorted:
            if first:
                return 0.0
            cadence = max(self.min_delay, elapsed * self.GROWTH)
            return self._clamp(min(cadence, self.prior / 10))
        lo, hi = self._quantile(self.LO), self._quantile(self.HI)
        if first:
            # not polled yet: nothing is known about this job but what its predecessors took
            return min(self.max_delay, max(self._sorted[0] * 0.8, lo - elapsed))
        step = min(self.min_delay, max(self.STEP_FLOOR, lo * self.SHORT_STEP))
        dense = min(self.DENSE_MAX, max(step, (hi - lo) / self.DENSE_SPLIT))
        if status == "in_queue":
            floor = max(dense, self._sorted[0] * 0.8)
            slot = self._slot()
            if slot is not None and queue_position:
                # it starts after `queue_position` completions, then runs at least the shortest
                floor = max(floor, queue_position * slot * self.QUEUE_TRUST + self._sorted[0] * 0.8)
            return self._clamp(max(floor, lo - elapsed), step)
        if elapsed < lo - dense:
            return self._clamp(lo - elapsed, step)
        if elapsed <= hi:
            return self._clamp(dense, step)
        return self._clamp(max(dense, (elapsed - hi) * self.TAIL), step)
