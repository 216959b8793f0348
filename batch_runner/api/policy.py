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
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
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
