"""A run's signal handlers: Ctrl-C / SIGTERM once drains, twice exits; `batch-runner cancel`
(CANCEL_SIGNAL to the lock's owner) drains and leaves the rest pending."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from batch_runner.run.lock import CANCEL_SIGNAL
from batch_runner.run.scheduler import Stop


@dataclass
class Hooks:
    """What the signal handlers read: the jobs not started, and where to print."""

    waiting: Callable[[], int]
    say: Callable[[str], None]
    started: bool = False  # the workers run: before, a signal also ends what is awaited


def install_signals(stop: Stop, main: asyncio.Task | None, hooks: Hooks) -> None:
    """Ctrl-C / SIGTERM: once drains, twice exits; `hooks.say` prints above the progress bars."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.signal()
        if stop.signals == 1:
            hooks.say(
                "stopping: no new submissions; finishing the jobs in flight "
                f"({hooks.waiting()} not started wait for a resume). "
                "Press Ctrl-C again to exit now."
            )
        elif main is not None:
            hooks.say("exiting now; the state file is consistent, resume to continue")
        if main is not None and (stop.signals > 1 or not hooks.started):
            main.cancel()  # before the workers start nothing is in flight: stop waiting now

    def on_cancel() -> None:  # `batch-runner cancel RUN_DIR` signals the lock's owner
        if not stop.cancelled:
            stop.cancel()
            hooks.say(
                "cancel requested (batch-runner cancel): no new submissions; finishing the "
                f"jobs in flight ({hooks.waiting()} not started stay pending)"
            )

    for sig in _signals():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    if _signals():  # the cancel signal, like the others, belongs to the main thread
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(CANCEL_SIGNAL, on_cancel)


def remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in (*_signals(), CANCEL_SIGNAL) if _signals() else ():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(sig)


def _signals() -> tuple[signal.Signals, ...]:
    """Signals are for the main thread only: the Python API inside a running event loop (a
    notebook) runs on a worker thread, where the caller's own Ctrl-C handling stays as it is."""
    if threading.current_thread() is not threading.main_thread():
        return ()
    return (signal.SIGINT, signal.SIGTERM)
