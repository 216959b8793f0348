"""One run per directory: a second lock fails with LockedError (naming the holder's pid), and the
lock is free again once released, or once its process is gone (also after kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from batch_runner.errors import LockedError, StateError
from batch_runner.run.lock import LOCK_FILE, RunLock


def test_a_second_lock_on_the_same_directory_fails(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(LockedError) as info:
            RunLock(tmp_path).acquire()
        assert f"already running (pid {os.getpid()})" in str(info.value)
        assert info.value.exit_code == 2


def test_the_lock_is_free_after_release(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    first.release()
    first.release()  # twice is harmless
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())


def test_locks_on_two_directories_are_independent(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with RunLock(tmp_path / "a"), RunLock(tmp_path / "b"):
        pass


_HOLD = (
    "import sys, time; from pathlib import Path; from batch_runner.run.lock import RunLock; "
    "RunLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
)


def test_the_lock_dies_with_its_process(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    with RunLock(tmp_path):  # the kernel dropped the dead process's lock
        pass


def test_a_directory_that_cannot_hold_the_lock_file_is_a_state_error(tmp_path):
    with pytest.raises(StateError, match="cannot create lock file"):
        RunLock(tmp_path / "missing").acquire()
