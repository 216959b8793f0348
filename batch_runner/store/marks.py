"""Keep/reject marks (CONTRACT §2, release 3): a person's verdict on a job's outputs, stored in
`state.db` beside the run's own record.

A mark belongs to a job (its key), and so to every file the job made: the contract's
`POST /api/marks` names a job key, and a job's files come from one generation with one prompt.
A cleared mark stays as a row with `mark` NULL, so `marked_at` tells when marks last changed
(a finished run's metadata.jsonl is rewritten when they did).

Marks are the one thing `serve` writes: each is one short transaction on its own connection,
so a run writing the same file waits at most that long (SQLite's WAL lets readers on).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from batch_runner.errors import StateError, UsageError
from batch_runner.store.migrations import migrate, schema_version

MARKS_VERSION = 7  # the schema version that added the marks table
MARKS = ("keep", "reject")


def has_marks_table(version: int) -> bool:
    """Whether a state file at `version` has the table (older ones opened read-only do not)."""
    return version >= MARKS_VERSION


def mark_counts(conn: sqlite3.Connection, version: int) -> dict[str, int]:
    """{"keep": n, "reject": n} over the jobs' marks ({} when there are none)."""
    if not has_marks_table(version):
        return {}
    rows = dict(
        conn.execute("SELECT mark, count(*) FROM marks WHERE mark IS NOT NULL GROUP BY mark")
    )
    if not rows:
        return {}
    return {m: rows.get(m, 0) for m in MARKS}


def marks_between(conn: sqlite3.Connection, version: int, lo: int, hi: int) -> dict[int, str]:
    """The marks of the jobs whose index is in [lo, hi], by index."""
    if not has_marks_table(version):
        return {}
    return dict(
        conn.execute(
            "SELECT j.idx, m.mark FROM marks m JOIN jobs j ON j.key = m.key "
            "WHERE j.idx BETWEEN ? AND ? AND m.mark IS NOT NULL",
            (lo, hi),
        )
    )


def last_marked(conn: sqlite3.Connection, version: int) -> float | None:
    """When a mark was last set or cleared (epoch seconds; None: never)."""
    if not has_marks_table(version):
        return None
    return conn.execute("SELECT max(marked_at) FROM marks").fetchone()[0]


WRITTEN = "marks_written"  # meta: the last `marked_at` that metadata.jsonl shows


def unwritten(conn: sqlite3.Connection, version: int) -> float | None:
    """The last change of the marks when metadata.jsonl does not show it yet, else None."""
    last = last_marked(conn, version)
    if last is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (WRITTEN,)).fetchone()
    return last if row is None or float(row[0]) < last else None


def note_written(state_file: Path, last: float) -> None:
    """metadata.jsonl (and report.html) now show the marks as of `last` (own connection: the
    caller's may be read-only)."""
    conn = sqlite3.connect(state_file, timeout=10, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute(
            "INSERT INTO meta(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (WRITTEN, repr(last)),
        )
    except sqlite3.Error as exc:
        raise StateError(f"{state_file}: cannot record the marks written ({exc})") from None
    finally:
        conn.close()


def check_mark(mark: object) -> str | None:
    if mark is None or mark in MARKS:
        return mark  # type: ignore[return-value]
    raise UsageError(f"mark must be keep, reject or null, got {mark!r}")


def set_mark(state_file: Path, key: str, mark: str | None) -> bool:
    """Store (or clear, `mark` None) the mark of the job `key`; False when no job has that key.

    Its own short-lived connection, opened for writing only now: the reads of `serve` stay
    read-only, and an older state file gains the table here (a migration, as any open for
    writing does)."""
    check_mark(mark)
    try:
        conn = sqlite3.connect(state_file, timeout=10, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateError(f"{state_file}: cannot open to store a mark ({exc})") from None
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if schema_version(conn) < MARKS_VERSION:
            migrate(conn, state_file)
        conn.execute("BEGIN IMMEDIATE")
        known = conn.execute("SELECT 1 FROM jobs WHERE key = ?", (key,)).fetchone()
        if known:
            conn.execute(
                "INSERT INTO marks(key, mark, marked_at) VALUES (?, ?, ?) ON CONFLICT(key) "
                "DO UPDATE SET mark = excluded.mark, marked_at = excluded.marked_at",
                (key, mark, time.time()),
            )
        conn.execute("COMMIT")
        return known is not None
    except sqlite3.Error as exc:
        raise StateError(f"{state_file}: cannot store a mark ({exc})") from None
    finally:
        conn.close()
