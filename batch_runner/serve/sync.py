"""Marks into metadata.jsonl and report.html, a moment after the last mark, for each run
directory no run holds (`report/marked.py`; a live run writes them itself when it ends).

The run directory's lock is taken for the rewrite, so a run started meanwhile waits for it
rather than appending to a metadata.jsonl about to be replaced (it is refused with "already
running" for that moment, and can simply be started again).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from batch_runner.errors import BatchRunnerError, LockedError
from batch_runner.report.marked import write_marks
from batch_runner.run.lock import RunLock
from batch_runner.serve.view import RunView
from batch_runner.store.state import StateStore


class MarksSync:
    """Debounced: a burst of marks (someone going through hundreds) is one rewrite."""

    def __init__(self, view: RunView, delay: float):
        self.view = view
        self.delay = delay
        self._task: asyncio.Task | None = None

    def changed(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.delay)
        await asyncio.to_thread(self.write_now)

    async def flush(self) -> None:
        """On shutdown: what is pending is written now."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            await asyncio.to_thread(self.write_now)

    def write_now(self) -> None:
        for _, path in self.view.parts():
            lock = RunLock(path)
            try:
                lock.acquire()
            except LockedError:
                continue  # the run writes them when it ends
            try:
                store = StateStore.open(path, readonly=True)
                try:
                    write_marks(path, store)
                finally:
                    store.close()
            except (BatchRunnerError, OSError) as exc:
                print(f"warning: marks not written to {path}: {exc}", file=sys.stderr)
            finally:
                lock.release()
