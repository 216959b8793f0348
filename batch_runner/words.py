"""Words in messages: counts ("1 job", "2 jobs") and durations ("2 min 5 s", "7 h 12 min")."""

from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and the noun agreeing with it (`nouns`: an irregular plural)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def duration_text(seconds: float) -> str:
    """A duration as a person reads it: "45 s", "2 min 5 s", "7 h 12 min" (one place for the
    progress display's ETA, the summary's ETA and the --notify line's wall time)."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"
