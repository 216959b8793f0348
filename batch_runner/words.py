"""Words for counts in messages: "1 job", "2 jobs"."""

from __future__ import annotations


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and the noun agreeing with it (`nouns`: an irregular plural)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"
