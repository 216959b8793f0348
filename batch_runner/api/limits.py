"""An adaptive request-rate limit shared by every worker (GCRA spacing, AIMD on 429s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Spaces API requests at `rate` per second; a 429 halves the rate, successes restore it.

    `rate=None` means unlimited until the first 429, which sets the rate to half of what was
    being sent. Each 429 also lowers the ceiling to 3/4 of the rate that drew it; recovery is
    additive (`recovery` × ceiling per second of successes) up to that ceiling, which then
    rises by `probe` per second (never past a configured rate). `clock` and `sleep` are
    injectable for tests.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        floor: float = 0.5,
        recovery: float = 0.05,
        probe: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive or None")
        self.configured = rate
        self.floor = floor
        self.recovery = recovery
        self.probe = probe
        self._clock = clock
        self._sleep = sleep
        self._rate = rate  # effective rate; None = unlimited
        self._ceiling = rate  # what recovery climbs back to
        self._tat = 0.0  # GCRA theoretical arrival time of the next request
        self._hold_until = 0.0
        self._last_cut = float("-inf")
        self._last_recover = 0.0
        self._window_start = 0.0
        self._window_count = 0
        self._observed = 0.0  # requests per second sent in the last full window

    @property
    def current_rate(self) -> float | None:
        """The effective rate in requests per second, or None when unlimited."""
        return self._rate

    def _count(self, now: float) -> None:
        # a one-second tumbling window: enough to know what "unlimited" was sending
        if now - self._window_start >= 1.0:
            elapsed = now - self._window_start
            self._observed = self._window_count / elapsed if elapsed < 2.0 else 0.0
            self._window_start = now
            self._window_count = 0
        self._window_count += 1

    def try_acquire(self) -> bool:
        """Take the next request's turn if it needs no wait (True); else `await acquire()`."""
        now = self._clock()
        if self._rate is None and now >= self._hold_until:
            self._count(now)
            return True
        return False

    async def acquire(self) -> None:
        """Wait until the next request may be sent."""
        if self.try_acquire():
            return
        now = self._clock()
        while now < self._hold_until:
            await self._sleep(self._hold_until - now)
            now = self._clock()
        if self._rate is not None:
            # reserve a slot: concurrent callers queue up one interval apart
            start = max(self._tat, now)
            self._tat = start + 1.0 / self._rate
            if start > now:
                await self._sleep(start - now)
        self._count(self._clock())

    def on_throttled(self, retry_after: float | None = None) -> None:
        """A 429: halve the rate (once per second at most) and hold everyone for `retry_after`."""
        now = self._clock()
        if retry_after is not None and retry_after > 0:
            self._hold_until = max(self._hold_until, now + retry_after)
        if now - self._last_cut < 1.0:
            return  # a burst of 429s from requests already in flight is one signal, not many
        self._last_cut = now
        if self._rate is None:
            # over at least a second: a burst of N requests in a few ms is N per second
            elapsed = max(now - self._window_start, 1.0)
            self._rate = max(self.floor, self._observed, self._window_count / elapsed)
        # the rate that drew this 429 is too high: recover to below it, not back into it
        self._ceiling = max(self.floor, min(self._ceiling or self._rate, self._rate * 0.75))
        self._rate = max(self.floor, self._rate / 2)
        self._last_recover = now

    def on_success(self) -> None:
        """A request that was not throttled: creep back toward the ceiling, then probe above it."""
        if self._rate is None or self._ceiling is None:
            return
        now = self._clock()
        elapsed = now - self._last_recover
        if elapsed <= 0:
            return
        self._last_recover = now
        if self._rate >= self._ceiling:
            # probe slowly (1 % per second), so a server that allows more is found again
            self._ceiling *= 1.0 + self.probe * elapsed
            if self.configured is not None:
                self._ceiling = min(self._ceiling, self.configured)
        self._rate = min(self._ceiling, self._rate + self.recovery * self._ceiling * elapsed)
