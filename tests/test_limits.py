"""RateLimiter with a fake clock: spacing, halving on 429, holding for Retry-After, recovery."""

from __future__ import annotations

import asyncio

import pytest

from batch_runner.api.limits import RateLimiter


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(rate: float | None, t: FakeTime) -> RateLimiter:
    return RateLimiter(rate, clock=t.clock, sleep=t.sleep)


async def test_rate_is_respected_sequentially():
    t = FakeTime()
    lim = limiter(10.0, t)
    stamps = []
    for _ in range(50):
        await lim.acquire()
        stamps.append(t.now)
    assert stamps[-1] - stamps[0] == pytest.approx(4.9)
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(stamps, stamps[1:], strict=False))


async def test_concurrent_acquirers_reserve_distinct_slots():
    lim = RateLimiter(20.0)  # real clock: 10 acquisitions take ≈ 0.45 s
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def one() -> None:
        await lim.acquire()
        stamps.append(loop.time())

    await asyncio.gather(*(one() for _ in range(10)))
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 0.45 - 0.02


async def test_unlimited_never_sleeps():
    t = FakeTime()
    lim = limiter(None, t)
    for _ in range(1000):
        await lim.acquire()
    assert t.sleeps == [] and lim.current_rate is None


async def test_throttle_halves_to_a_floor_once_per_second():
    t = FakeTime()
    lim = limiter(8.0, t)
    lim.on_throttled()
    assert lim.current_rate == 4.0
    lim.on_throttled()  # same burst: ignored
    assert lim.current_rate == 4.0
    for _ in range(10):
        t.now += 1.0
        lim.on_throttled()
    assert lim.current_rate == 0.5


async def test_retry_after_holds_everyone():
    t = FakeTime()
    lim = limiter(None, t)
    start = t.now
    lim.on_throttled(retry_after=5.0)
    await lim.acquire()
    assert t.now - start >= 5.0


async def test_unlimited_becomes_half_of_what_was_sent_then_recovers():
    t = FakeTime()
    lim = limiter(None, t)
    for _ in range(40):  # 40 requests per second for two seconds
        await lim.acquire()
        t.now += 0.025
    for _ in range(40):
        await lim.acquire()
        t.now += 0.025
    lim.on_throttled()
    assert lim.current_rate == pytest.approx(20.0, rel=0.1)
    for _ in range(30):
        t.now += 1.0
        lim.on_success()
    # back up to 3/4 of what drew the 429 and probing slowly above it, never unlimited again
    assert 30.0 <= lim.current_rate <= 30.0 * 1.01**30


async def test_recovery_is_gradual_and_capped_at_configured_rate():
    t = FakeTime()
    lim = limiter(10.0, t)
    lim.on_throttled()
    assert lim.current_rate == 5.0
    t.now += 1.0
    lim.on_success()
    assert lim.current_rate == pytest.approx(5.375)  # +5% of the 7.5 ceiling per second
    t.now += 100.0
    lim.on_success()
    assert lim.current_rate == 7.5  # recovered to the ceiling
    t.now += 100.0
    lim.on_success()
    assert lim.current_rate == 10.0  # probing above it, but never past the configured rate


async def test_slower_rate_spaces_requests_after_throttle():
    t = FakeTime()
    lim = limiter(10.0, t)
    await lim.acquire()
    lim.on_throttled()
    t0 = t.now
    for _ in range(6):
        await lim.acquire()
    assert t.now - t0 >= 5 * 0.2 - 1e-9  # 5 rps now


def test_rejects_nonpositive_rate():
    with pytest.raises(ValueError):
        RateLimiter(0)
