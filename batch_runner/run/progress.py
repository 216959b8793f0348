"""Progress: tqdm bars on a terminal, periodic one-line log updates otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from batch_runner.run.lifecycle import Tracker

if TYPE_CHECKING:
    from tqdm import tqdm

LOG_EVERY = 10.0  # seconds between one-line updates when stdout is not a terminal


class Progress:
    """Listens to the run's tracker and shows submitted / finished / downloaded."""

    def __init__(self, tracker: Tracker, *, total: int, to_submit: int, enabled: bool):
        self.tracker = tracker
        self.total = total
        self.bars: dict[str, tqdm] = {}
        self._last_log = time.monotonic()
        self._log = enabled and not sys.stdout.isatty()
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm  # only for a terminal: it costs start-up time

            opts = {"file": sys.stderr, "dynamic_ncols": True, "leave": True}
            self.bars = {
                "submitted": tqdm(
                    total=to_submit, desc="submitted ", unit="job", position=0, **opts
                ),
                "finished": tqdm(total=total, desc="finished  ", unit="job", position=1, **opts),
                "file": tqdm(desc="downloaded", unit="file", position=2, **opts),
            }
        if self.bars or self._log:  # nothing to show: no call per event
            tracker.listeners.append(self._on_event)

    def _on_event(self, event: str, amount: int) -> None:
        bar = self.bars.get(event)
        if bar is not None:
            bar.update(amount)
        elif self._log and time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        t = self.tracker
        return (
            f"progress: {t.submitted} submitted, {t.finished}/{self.total} finished, "
            f"{t.files} files ({t.bytes / 1e6:.1f} MB)"
        )

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars = {}
