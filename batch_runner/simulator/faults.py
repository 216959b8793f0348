"""Fault injection: rate limiting, error answers, dropped connections and truncated bodies.

Decisions come from the store's seeded `fault_rng`, and every injected fault is counted in
`stats.faults` under its kind.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from batch_runner.simulator.config import SimConfig
from batch_runner.simulator.store import JobStore

ERROR_200_SHARE = 0.25  # share of injected server errors that arrive as HTTP 200 + error_code
RETRY_AFTER_HEADER_SHARE = 0.5
RETRY_AFTER_BODY_SHARE = 0.3


def error_body(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """A RunComfy error body."""
    return {"error_code": code, "error_message": message, **extra}


def json_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """An HTTP answer carrying a RunComfy error body."""
    return web.json_response(error_body(code, message, **extra), status=status, headers=headers)


class DropResponse(web.StreamResponse):
    """Closes the connection instead of answering: the client sees a disconnect, no status."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        transport = request.transport
        if transport is not None:
            transport.close()
        # aiohttp treats a ConnectionError here as "client went away": no 500, no log
        raise ConnectionResetError("connection dropped by the simulator")


class TruncatedResponse(web.StreamResponse):
    """Announces the full Content-Length, sends only `cut` bytes of the body, then closes."""

    def __init__(self, body: bytes, cut: int, *, status: int = 200, headers: Any = None):
        super().__init__(status=status, headers=headers)
        self.content_length = len(body)
        self._partial = body[:cut]

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        await super().prepare(request)
        if self._partial:
            await self.write(self._partial)
        transport = request.transport
        if transport is not None:
            transport.close()  # close, not abort: what was written still reaches the client
        raise ConnectionResetError("download truncated by the simulator")


class RateLimiter:
    """A token bucket holding one second's worth of requests; reads the rate on every call."""

    def __init__(self) -> None:
        self._tokens: float | None = None
        self._stamp = time.monotonic()

    def allow(self, rate: float | None) -> bool:
        if rate is None:
            self._tokens = None
            return True
        now = time.monotonic()
        burst = max(1.0, rate)
        if self._tokens is None:
            self._tokens = burst
        self._tokens = min(burst, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Faults:
    """Decides, from the seeded generator, which fault (if any) hits a request."""

    def __init__(self, store: JobStore):
        self.store = store
        self.limiter = RateLimiter()
        self._released = asyncio.Event()  # set (and replaced) whenever the settings change

    @property
    def _config(self) -> SimConfig:
        return self.store.config

    def _hit(self, rate: float) -> bool:
        return rate > 0 and self.store.fault_rng.random() < rate

    def count(self, kind: str) -> None:
        self.store.stats.faults[kind] += 1

    def api_gate(self) -> web.StreamResponse | None:
        """A fault answer for an API call (429, drop, 5xx, HTTP-200 error), or None to proceed."""
        if not self.limiter.allow(self._config.rate_limit):
            return self._rate_limited()
        if self.drop():
            return DropResponse()
        if self._hit(self._config.error_rate):
            return self._server_error()
        return None

    def _rate_limited(self) -> web.Response:
        self.count("rate_limited")
        rng = self.store.fault_rng
        headers = {"Retry-After": "1"} if rng.random() < RETRY_AFTER_HEADER_SHARE else None
        extra = {"retry_after": 1} if rng.random() < RETRY_AFTER_BODY_SHARE else {}
        return json_error(429, 429001, "too many requests (simulated)", headers, **extra)

    def _server_error(self) -> web.Response:
        rng = self.store.fault_rng
        if rng.random() < ERROR_200_SHARE:
            return self.error_200()
        status = rng.choice((500, 502, 503))
        self.count(f"error_{status}")
        return json_error(status, 500001, f"server error {status} (simulated)")

    def error_200(self) -> web.Response:
        """An HTTP 200 whose body is a RunComfy server error."""
        self.count("error_200")
        return json_error(200, 500001, "internal error (simulated, HTTP 200)")

    def drop(self) -> bool:
        """Whether to close this connection without an answer (counted)."""
        if self._hit(self._config.drop_rate):
            self.count("drop")
            return True
        return False

    def lost_submit(self) -> bool:
        """Whether a created job's submit answer is lost (counted)."""
        if self._hit(self._config.lost_submit_rate):
            self.count("lost_submit")
            return True
        return False

    def _holds(self, model: str, prompt: Any) -> bool:
        text = prompt if isinstance(prompt, str) else ""
        return any(h == model or h in text for h in self._config.hold_submits)

    async def hold_submit(self, model: str, body: dict[str, Any]) -> None:
        """A created job whose submit `hold_submits` names: its answer waits until the entry
        is removed (`held_submits` counts the answers waiting now, `held_submits_total` all)."""
        if not self._holds(model, body.get("prompt")):
            return
        stats = self.store.stats
        stats.held_submits += 1
        stats.held_submits_total += 1
        try:
            while self._holds(model, body.get("prompt")):
                await self._released.wait()
        finally:
            stats.held_submits -= 1  # (the counters it was counted in, even after a reset)

    def settings_changed(self) -> None:
        """Held submits look again at `hold_submits`."""
        self._released.set()
        self._released = asyncio.Event()

    def truncate_at(self, size: int) -> int | None:
        """Where to cut a file body of `size` bytes, or None to send it whole (counted)."""
        if size > 0 and self._hit(self._config.truncate_rate):
            self.count("truncate")
            return self.store.fault_rng.randrange(size)
        return None

    def expired_status(self) -> int:
        """403 or 404, as storage hosts answer an expired signed URL."""
        return self.store.fault_rng.choice((403, 404))
