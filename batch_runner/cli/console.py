"""What the commands share at the edge: the one event loop, and printing (stdout for results,
stderr for talk)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any


def run_async(coro: Any, *, debug: bool = False) -> Any:
    """The one place that starts an event loop."""
    factory = _loop_factory()
    if debug:
        print(f"debug: event loop: {'asyncio' if factory is None else 'uvloop'}", file=sys.stderr)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the same asyncio API for less CPU per
    request. BATCH_RUNNER_LOOP=asyncio keeps the standard loop."""
    if os.environ.get("BATCH_RUNNER_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, ensure_ascii=False))


def say(text: str) -> None:
    """A line for the person at the terminal (stderr, so stdout stays for results)."""
    print(text, file=sys.stderr, flush=True)
