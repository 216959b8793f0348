"""A compact map of 64-bit digests to counts, for the checks that must remember every job of a
manifest (copy numbers of identical inputs, output names that clash): two flat arrays, open
addressing, at most half full. A million entries take ~24-48 MB, where a dict of key strings
takes ~150 MB.
"""

from __future__ import annotations

import hashlib
from array import array

_EMPTY = 0  # no digest is stored as 0: digest() never returns it


def digest(text: str) -> int:
    """A 64-bit digest of a text (never 0)."""
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return value or 1


def key_digest(key: str) -> int:
    """A job key (16 hex digits of a sha256) as its own 64-bit digest (never 0)."""
    return int(key, 16) or 1


class DigestMap:
    """digest → a value below 2**31, for digests from digest() or key_digest()."""

    def __init__(self, capacity: int = 1024):
        size = 1
        while size < 2 * capacity:
            size *= 2
        self._keys = array("Q", bytes(8 * size))
        self._values = array("i", bytes(4 * size))
        self._mask = size - 1
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def _slot(self, d: int) -> int:
        keys, mask = self._keys, self._mask
        i = (d ^ (d >> 29)) & mask
        while True:
            k = keys[i]
            if k in (d, _EMPTY):
                return i
            i = (i + 1) & mask

    def get(self, d: int, default: int | None = None) -> int | None:
        i = self._slot(d)
        return self._values[i] if self._keys[i] == d else default

    def setdefault(self, d: int, value: int) -> tuple[int, bool]:
        """(the value stored for `d`, whether it was there before); `value` stored if not."""
        i = self._slot(d)
        if self._keys[i] == d:
            return self._values[i], True
        self._put(i, d, value)
        return value, False

    def add(self, d: int, n: int) -> int:
        """The value stored for `d` before (0 if none), which becomes that plus `n`."""
        i = self._slot(d)
        if self._keys[i] == d:
            before = self._values[i]
            self._values[i] = before + n
            return before
        self._put(i, d, n)
        return 0

    def _put(self, i: int, d: int, value: int) -> None:
        self._keys[i] = d
        self._values[i] = value
        self._used += 1
        if 2 * self._used > self._mask:
            self._grow()

    def _grow(self) -> None:
        keys, values = self._keys, self._values
        size = 2 * len(keys)
        self._keys = array("Q", bytes(8 * size))
        self._values = array("i", bytes(4 * size))
        self._mask = size - 1
        for k, v in zip(keys, values, strict=True):
            if k != _EMPTY:
                i = self._slot(k)
                self._keys[i] = k
                self._values[i] = v
