"""Retry classification and backoff: pure functions over data, no I/O (polling.py plans polls).

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

A call with no answer at all (`unreachable`: refused, reset, DNS, TLS, timeout) is also fed to
the run's outage window (`run/outage.py`): it does not use up a job's tries, and when no call
has been answered for the whole window the run stops (exit 4) instead of failing jobs.
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
from dataclasses import dataclass
from enum import StrEnum

from batch_runner.errors import (
    AccountError,
    ApiError,
    DownloadError,
    ErrorKind,
    RemoteError,
    TransportError,
)

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


_RETRYABLE_GET = frozenset(
    {ErrorKind.THROTTLED, ErrorKind.HTTP_5XX, ErrorKind.DROPPED, ErrorKind.TIMEOUT}
)
_AMBIGUOUS_SUBMIT = frozenset(
    {ErrorKind.DROPPED, ErrorKind.TIMEOUT, ErrorKind.BAD_ANSWER, ErrorKind.UNKNOWN_STATUS}
)
_DOWNLOAD_RETRY = frozenset(
    {
        ErrorKind.TRUNCATED,
        ErrorKind.DROPPED,
        ErrorKind.TIMEOUT,
        ErrorKind.HTTP_5XX,
        ErrorKind.THROTTLED,
    }
)


def _cause(error: RemoteError) -> str:
    if error.kind:
        return error.kind
    if error.status is not None:
        return ErrorKind.HTTP_5XX if error.status >= 500 else ErrorKind.HTTP_4XX
    return "error"


def _classify_submit(error: ApiError) -> Action:
    kind, status = error.kind, error.status
    if isinstance(error, TransportError) and not error.sent:
        return Action.RETRY  # refused before the body left: nothing was created
    if kind == ErrorKind.THROTTLED or status == 408:
        return Action.RETRY
    if kind == ErrorKind.HTTP_5XX:
        # a RunComfy error body on 500/503 means the server refused the job; 502/504 come from
        # a gateway that may have forwarded it, and a bare 5xx says nothing either way
        if error.error_code is not None and status not in (502, 504):
            return Action.RETRY
        return Action.AMBIGUOUS
    if kind in _AMBIGUOUS_SUBMIT or isinstance(error, TransportError):
        return Action.AMBIGUOUS
    return Action.FAIL


def _classify_poll(error: ApiError) -> Action:
    kind = error.kind
    if kind == ErrorKind.EXPIRED or error.error_code == 404001:
        return Action.EXPIRED
    if kind in _RETRYABLE_GET or error.status == 408:
        return Action.RETRY
    # the job exists (and may be paid for): a strange answer is worth asking again, a bounded
    # number of times, before giving the job up
    if kind == ErrorKind.BAD_ANSWER:
        return Action.RETRY
    return Action.FAIL


def _classify_download(error: RemoteError) -> Action:
    kind = error.kind
    if kind == ErrorKind.EXPIRED_URL or error.status in (403, 404, 410):
        return Action.REFRESH
    if kind in _DOWNLOAD_RETRY:
        return Action.RETRY
    return Action.FAIL


def _classify_other(error: BaseException, op: str) -> Decision:
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        action = Action.AMBIGUOUS if op == "submit" else Action.RETRY
        return Decision(action, ErrorKind.TIMEOUT)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return Decision(Action.STOP, "disk_full")
    if isinstance(error, OSError):
        return Decision(Action.FAIL, "io")
    return Decision(Action.FAIL, type(error).__name__)


def classify(error: BaseException, op: str) -> Decision:
    """Decide what to do after `error` from `op`: "submit", "poll", "cancel" or "download"."""
    if isinstance(error, AccountError):
        return Decision(Action.STOP, "account")
    if not isinstance(error, RemoteError):
        return _classify_other(error, op)
    match op, error:
        case ("download", _) | (_, DownloadError()):
            action = _classify_download(error)
        case ("submit", ApiError()):
            action = _classify_submit(error)
        case ("poll" | "cancel", ApiError()):
            action = _classify_poll(error)
        case _:
            raise ValueError(f"unknown operation {op!r} for {type(error).__name__}")
    delay = error.retry_after if action is Action.RETRY else None
    return Decision(action, _cause(error), delay)


def unreachable(error: BaseException) -> bool:
    """No answer at all (refused, reset, DNS, TLS, timeout): on every call over a window, the API
    is down (an outage); an answer of any kind, even an error page, means it is reachable."""
    return isinstance(error, TransportError) and error.kind in (
        ErrorKind.DROPPED,
        ErrorKind.TIMEOUT,
    )


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt))."""
    exponent = min(max(attempt, 0), 60)  # 2**60 already dwarfs any cap; avoids float overflow
    return rng.uniform(0.0, min(cap, base * 2.0**exponent))


_testing = False


def set_testing(testing: bool) -> None:
    """Tests only (as stamina's `set_testing`): every retry delay is 0, so retries follow at
    once; what is retried, how often and why stays the same."""
    global _testing
    _testing = testing


def retry_delay(error: BaseException, attempt: int, rng: random.Random) -> float:
    """The backoff for `attempt`, but never sooner than a Retry-After the server asked for."""
    if _testing:
        return 0.0
    delay = backoff(attempt, rng=rng)
    retry_after = getattr(error, "retry_after", None)
    if isinstance(retry_after, int | float) and math.isfinite(retry_after) and retry_after > 0:
        delay = max(delay, min(float(retry_after), RETRY_AFTER_CAP))
    return delay
