"""Every file batch_runner writes reaches its final name whole: written beside it, then renamed.

One write path: a file is written to `NAME.<pid>-<n>.part` in its folder and renamed over NAME
only once complete; on a failure the part file is removed, and a crash leaves at most a part
file (a resumed run deletes those in the output folders). Downloads stream bytes through `PartFile`,
which hashes and counts them as written; the report, exports and a rebuilt metadata.jsonl
write text through `atomic_text`, on the same part name and rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import aiofiles.os

_numbers = itertools.count(1)
# read-write: the structure check reads the part file back before the rename
_CREATE = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def part_path(final: Path) -> str:
    """The name `final` is written under until it is complete: beside it, unique to this call."""
    return f"{final}.{os.getpid()}-{next(_numbers)}.part"


class PartFile:
    """A file being written beside its final name, hashed and counted as it is written.

    Plain os calls, no buffered file object: the usual image is one write, and that is
    cheaper this way (measured). `write` may run on a worker thread; a lock keeps `discard`
    from closing the descriptor under a write still running there.
    """

    def __init__(self, final: Path):
        self.final = final
        self.path = part_path(final)
        self.size = 0
        self._hash = hashlib.sha256()
        self._fd: int | None = None
        self._done = False
        self._lock = threading.Lock()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        """Append `data` (blocking; big files call it on a worker thread)."""
        with self._lock:
            fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._hash.update(data)
            self.size += len(data)

    async def awrite(self, data: bytes) -> None:
        """`write` off the event loop, on aiofiles' executor: the write and its hashing run
        there together, under the lock that keeps `discard` from closing the descriptor."""
        await _write_off_loop(self, data)

    def read_at(self, offset: int, size: int) -> bytes:
        """Bytes written so far at `offset` (for the structure check before the rename)."""
        with self._lock:
            if offset < 0 or self._fd is None:
                return b""
            return os.pread(self._fd, size, offset)

    def commit(self) -> None:
        """Put the complete file in place under its final name."""
        with self._lock:
            fd = self._open()
            self._fd, self._done = None, True
        os.close(fd)
        os.replace(self.path, self.final)

    def discard(self) -> None:
        """Remove the part file (the body was refused, cut short, or could not be written)."""
        with self._lock:
            fd, self._fd, self._done = self._fd, None, True
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _open(self) -> int:
        if self._done:
            raise ValueError(f"{self.path} is already committed or discarded")
        if self._fd is None:
            try:
                self._fd = os.open(self.path, _CREATE, 0o666)
            except FileNotFoundError:  # a new folder (or one removed during the run)
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._fd = os.open(self.path, _CREATE, 0o666)
        return self._fd


_write_off_loop = aiofiles.os.wrap(PartFile.write)


@contextlib.contextmanager
def atomic_text(
    final: Path, *, durable: bool = False, newline: str | None = None
) -> Iterator[TextIO]:
    """Write UTF-8 text to `final` whole or not at all; `durable`: on disk before the rename."""
    part = part_path(final)
    try:
        with open(part, "w", encoding="utf-8", newline=newline) as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(part, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
