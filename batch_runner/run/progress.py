"""Progress: what the run has counted, shown as tqdm bars on a terminal, periodic one-line log
updates otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batch_runner.money import dollars, usd
from batch_runner.sizes import size_text
from batch_runner.words import duration_text

if TYPE_CHECKING:
    from tqdm import tqdm

LOG_EVERY = 10.0  # seconds between one-line updates when stdout is not a terminal
ETA_EVERY = 5.0  # seconds between ETA estimates (each reads the state file)


@dataclass
class Tally:
    """Counts of the run so far, changed only through the `count_*` methods, each of which
    tells the listeners ("submitted", "finished" or "file")."""

    submitted: int = 0
    sending: int = 0  # POSTs on their way, not answered yet (not yet submitted, as far as known)
    finished: int = 0
    added: int = 0  # jobs made while the run went (a pipeline's children)
    files: int = 0
    bytes: int = 0
    spent: float = 0.0  # USD the API says the run's attempts cost
    estimated: float | None = None  # USD the whole run is estimated to cost (None: unknown)
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def count_submitted(self) -> None:
        self.submitted += 1
        self._tell("submitted")

    def count_sending(self, change: int) -> None:
        """A submit left (+1) or its answer came, whatever it was (-1)."""
        self.sending += change
        self._tell("sending")

    def count_added(self, n: int) -> None:
        """Jobs joined the run while it goes (a pipeline's children, as parents finish)."""
        if n:
            self.added += n
            self._tell("added")

    def count_finished(self) -> None:
        self.finished += 1
        self._tell("finished")

    def count_file(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        self._tell("file")

    def count_cost(self, cost: float) -> None:
        self.spent = usd(self.spent + cost)
        self._tell("cost")

    def _tell(self, event: str) -> None:
        for listener in self.listeners:
            listener(event)


class Progress:
    """Listens to the run's tally and shows submitted / finished / downloaded."""

    def __init__(
        self,
        tally: Tally,
        *,
        total: int,
        to_submit: int,
        enabled: bool,
        auto: bool = False,
        eta: Callable[[], float | None] | None = None,
    ):
        """`auto`: tqdm.auto bars whatever stdout is (a notebook shows them as widgets);
        `eta`: seconds until the run's jobs are finished (None: not known yet)."""
        self.tally = tally
        self.total = total
        self._added = 0  # of tally.added, how many the totals already count
        self._eta = eta
        self._eta_at = -ETA_EVERY
        self._eta_text = ""
        self.bars: dict[str, tqdm] = {}
        self._last_log = time.monotonic()
        bars = auto or (enabled and sys.stdout.isatty())
        self._log = enabled and not bars
        if bars:
            # imported only for bars: it costs start-up time
            from tqdm import tqdm as terminal_tqdm
            from tqdm.auto import tqdm as auto_tqdm

            bar = auto_tqdm if auto else terminal_tqdm
            opts = {"file": sys.stderr, "dynamic_ncols": True, "leave": True}
            self.bars = {
                "submitted": bar(
                    total=to_submit, desc="submitted ", unit="job", position=0, **opts
                ),
                "finished": bar(total=total, desc="finished  ", unit="job", position=1, **opts),
                "file": bar(desc="downloaded", unit="file", position=2, **opts),
            }
        if self.bars or self._log:  # nothing to show: no call per event
            tally.listeners.append(self._on_event)

    def _on_event(self, event: str) -> None:
        if event == "added":
            self._grow()
            return
        if event == "sending" and self.bars:
            self._sending(self.bars["submitted"])
            return
        bar = self.bars.get(event)
        if bar is not None:
            bar.update(1)
            if event == "finished":
                bar.set_postfix_str(self.money(), refresh=False)
        elif self._log and time.monotonic() - self._last_log >= LOG_EVERY:
            self._last_log = time.monotonic()
            print(self.line(), file=sys.stderr, flush=True)

    def _grow(self) -> None:
        """Children made: each is one more job to submit and to finish."""
        n, self._added = self.tally.added - self._added, self.tally.added
        self.total += n
        for name in ("submitted", "finished"):
            bar = self.bars.get(name)
            if bar is not None:
                bar.total = (bar.total or 0) + n
                bar.refresh()

    def _sending(self, bar: tqdm) -> None:
        """The submits on their way beside the submitted count ("0/16, 16 sending" while the
        first answers are awaited, not a bare 0/16); redrawn at once only until the first
        submit is answered (after that the next count redraws it: no redraw per POST)."""
        sending = self.tally.sending
        bar.set_postfix_str(f"{sending} sending" if sending else "", refresh=False)
        if not self.tally.submitted:
            bar.refresh()

    def say(self, text: str) -> None:
        """A message for the person at the terminal, printed above the bars, not through them."""
        if self.bars:
            next(iter(self.bars.values())).write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def line(self) -> str:
        t = self.tally
        sending = f" ({t.sending} sending)" if t.sending else ""
        return (
            f"progress: {t.submitted} submitted{sending}, {t.finished}/{self.total} finished, "
            f"{t.files} files ({size_text(t.bytes)}), {self.money()}"
        )

    def money(self) -> str:
        """$ spent / $ estimated for the whole run, and the ETA."""
        line = f"{dollars(self.tally.spent)} spent / {dollars(self.tally.estimated)} estimated"
        return line + self.eta()

    def eta(self) -> str:
        """ ", ETA 12 min 5 s" (asked at most every ETA_EVERY seconds), or "" while unknown."""
        if self._eta is not None and time.monotonic() - self._eta_at >= ETA_EVERY:
            self._eta_at = time.monotonic()
            seconds = self._eta()
            self._eta_text = f", ETA {duration_text(seconds)}" if seconds else ""
        return self._eta_text

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars = {}
