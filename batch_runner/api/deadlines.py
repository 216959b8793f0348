"""Time limits for many concurrent calls with one event-loop timer instead of one per call.

aiohttp's per-request `ClientTimeout(total=...)` schedules and cancels a timer for every
request; at thousands of requests a second that is a measurable share of the loop's time.
`Deadlines` keeps the deadlines of the calls in flight in a dict and a single timer, set for
the earliest of them: a call that outlives its deadline is cancelled and sees `TimeoutError`
(as with `asyncio.timeout`), while a call that ends in time costs a dict insert and a pop.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadlines:
    """Time limits for the calls of one event loop, served by one timer."""

    def __init__(self) -> None:
        self._due: dict[_Limit, float] = {}  # limits in force -> loop time they end at
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def limit(self, seconds: float) -> _Limit:
        """`with deadlines.limit(s):` cancels the current task after `s` seconds; the block
        then raises TimeoutError (a cancellation from anyone else passes through unchanged)."""
        return _Limit(self, seconds)

    def _start(self, limit: _Limit, when: float) -> None:
        self._due[limit] = when
        if self._timer is None or when < self._timer_at:
            self._arm(limit.task.get_loop(), when)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._check, loop)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel every call past its deadline; set the timer for the next deadline."""
        self._timer = None
        now = loop.time()
        earliest: float | None = None
        for limit, when in list(self._due.items()):
            if when <= now:
                del self._due[limit]
                limit.expired = True
                limit.task.cancel()
            elif earliest is None or when < earliest:
                earliest = when
        if earliest is not None:
            self._arm(loop, earliest)


class _Limit:
    __slots__ = ("_owner", "_seconds", "task", "expired")

    def __init__(self, owner: Deadlines, seconds: float):
        self._owner = owner
        self._seconds = seconds
        self.expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.limit() must be used inside a task")
        self.task = task
        self._owner._start(self, task.get_loop().time() + self._seconds)

    def __exit__(self, exc_type: type[BaseException] | None, exc: Any, tb: Any) -> bool:
        self._owner._due.pop(self, None)
        if self.expired:
            others = self.task.uncancel()  # take back our cancellation
            if exc_type is asyncio.CancelledError and not others:
                raise TimeoutError(f"no answer within {self._seconds:g} s") from exc
        return False
