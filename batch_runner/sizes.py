"""Byte sizes as people read them: the one formatter behind `status`, the run summary, the
progress line and the report, so they never disagree.

Decimal units (1 kB = 1,000 bytes, 1 MB = 10^6 bytes), as disks, browsers and the file sizes
of RunComfy's limits count them; the exact count of bytes is in `status --json` and the
report's tooltip.
"""

from __future__ import annotations

_UNITS = ("kB", "MB", "GB", "TB")


def size_text(n: int | float) -> str:
    """`532 B`, `3.0 kB`, `7.0 MB`, `1.2 GB`: one decimal from a kilobyte up."""
    if n < 1000:
        return f"{n:.0f} B"
    size = float(n)
    for unit in _UNITS:
        size /= 1000
        if round(size, 1) < 1000 or unit == _UNITS[-1]:
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")
