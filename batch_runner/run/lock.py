"""One run per directory: an OS-level lock that dies with the process (also after kill -9)."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

from batch_runner.errors import LockedError, StateError

LOCK_FILE = ".lock"
# `batch-runner cancel` sends this to the lock's owner: stop submitting, drain, exit 1
CANCEL_SIGNAL = signal.SIGUSR1


class RunLock:
    """An exclusive flock on RUN_DIR/.lock holding the owner's pid."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot create lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(f"{self.path.parent}: already running (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def owner(self) -> int | None:
        """The pid of the process running this directory now, or None when none is."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        finally:
            os.close(fd)  # closing also drops a shared lock we got
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
