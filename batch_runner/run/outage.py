"""Telling an outage from a blip: the API is down when every call of a whole window got no answer.

A refused connection, a DNS or TLS failure, a reset or a timeout now and then is a blip: the
call is tried again as before. When no call has had any answer (even an error page counts as
one) for `window` seconds, the API is unreachable: the run stops submitting and exits 4 with
its state intact, and nothing that was not sent is marked failed.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

WINDOW_ENV = "BATCH_RUNNER_OUTAGE_SECONDS"
DEFAULT_WINDOW = 60.0  # "about a minute": longer than any blip we retry through
PROBE = (0.5, 2.0)  # seconds between tries while unreachable: no tight loop, no long sleep


def outage_window() -> float:
    """The window: DEFAULT_WINDOW, or the environment's (tests and impatient users)."""
    raw = os.environ.get(WINDOW_ENV)
    try:
        value = float(raw) if raw else DEFAULT_WINDOW
    except ValueError:
        return DEFAULT_WINDOW
    return value if 0 < value < float("inf") else DEFAULT_WINDOW


class Outage:
    """When the last answer came and since when every call has gone unanswered."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._since: float | None = None  # the first unanswered call after the last answer

    def answered(self) -> None:
        self._since = None

    def unanswered(self) -> bool:
        """Record a call without an answer; True once the window is over (the API is down)."""
        now = self._clock()
        if self._since is None:
            self._since = now
        return now - self._since >= self.window

    @staticmethod
    def probe_delay(rng: random.Random) -> float:
        return rng.uniform(*PROBE)
