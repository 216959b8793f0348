"""Jobs of this run directory whose files were taken from an `--archive` (run/archived.py):
where they came from and what they cost there. StateStore extends this; the shared archive
itself is `store/archive.py`."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from batch_runner.jobs import FileRecord, JobState
from batch_runner.money import usd
from batch_runner.store.journal import Journal
from batch_runner.store.migrations import SCHEMA_VERSION

ARCHIVED_VERSION = 6  # the schema version that added the `archived` table
REQUEST_ID_VERSION = 9  # … and the `archived_requests` table beside it


class ArchivedJobs(Journal):
    """The reads and events of jobs taken from an archive."""

    version: int = SCHEMA_VERSION

    def archived_sources(
        self, conn: sqlite3.Connection, lo: int, hi: int
    ) -> dict[int, tuple[str, str | None]]:
        """{job idx: (the run directory its files came from, the request that made them
        there)} for jobs lo..hi (none in a file from before version 6, and no request ids
        before version 8, opened read-only)."""
        if self.version < ARCHIVED_VERSION:
            return {}
        rows = conn.execute(
            "SELECT job_idx, run_dir FROM archived WHERE job_idx BETWEEN ? AND ?", (lo, hi)
        ).fetchall()
        rids: dict[int, str] = {}
        if rows and self.version >= REQUEST_ID_VERSION:
            rids = dict(
                conn.execute(
                    "SELECT job_idx, request_id FROM archived_requests "
                    "WHERE job_idx BETWEEN ? AND ?",
                    (lo, hi),
                ).fetchall()
            )
        return {idx: (run_dir, rids.get(idx)) for idx, run_dir in rows}

    def record_archived(
        self,
        idx: int,
        state: JobState,
        source: tuple[str, str | None],
        files: Iterable[FileRecord],
        money: tuple[float | None, float | None],
    ) -> None:
        """A job's files are in place, copied from `source` (the archived run directory, and
        the request that made them there): its file records (with the URLs the API gave them,
        where the archive kept them), where they came from, what they cost there (cost,
        estimate) and its state, in one commit."""
        with self._tx():
            self._conn.execute("DELETE FROM files WHERE job_idx = ?", (idx,))
            self._conn.executemany(
                "INSERT INTO files(job_idx, k, file_name, sha256, bytes, url) VALUES (?,?,?,?,?,?)",
                [(idx, f.k, f.file_name, f.sha256, f.bytes, f.url) for f in files],
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO archived(job_idx, run_dir, cost_usd, estimate_usd, "
                "taken_at) VALUES (?,?,?,?,?)",
                (idx, source[0], money[0], money[1], time.time()),
            )
            self._conn.execute("DELETE FROM archived_requests WHERE job_idx = ?", (idx,))
            if source[1] is not None:
                self._conn.execute(
                    "INSERT INTO archived_requests(job_idx, request_id) VALUES (?,?)",
                    (idx, source[1]),
                )
            self._conn.execute(
                "UPDATE jobs SET state = ?, reason = NULL, outputs = NULL, updated_at = ? "
                "WHERE idx = ?",
                (state.value, time.time(), idx),
            )

    def forget_archived(self, idx: int, state: JobState, reason: str) -> None:
        """A job taken from an archive whose files are gone: it waits to be run like any other
        (its file records and where they came from are dropped), in one commit."""
        with self._tx():
            self._conn.execute("DELETE FROM files WHERE job_idx = ?", (idx,))
            self._conn.execute("DELETE FROM archived WHERE job_idx = ?", (idx,))
            self._conn.execute("DELETE FROM archived_requests WHERE job_idx = ?", (idx,))
            self._conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE idx = ?",
                (state.value, reason, time.time(), idx),
            )

    def archived_done(self) -> list[int]:
        """Indexes of the done jobs whose files came from an archive."""
        return [
            idx
            for (idx,) in self._conn.execute(
                "SELECT a.job_idx FROM archived a JOIN jobs j ON j.idx = a.job_idx "
                "WHERE j.state = ? ORDER BY a.job_idx",
                (JobState.DONE.value,),
            )
        ]

    def done_indexes(self) -> set[int]:
        return {
            idx
            for (idx,) in self._conn.execute(
                "SELECT idx FROM jobs WHERE state = ?", (JobState.DONE.value,)
            )
        }

    def archive_summary(self) -> dict[str, Any]:
        """The `from_archive` object of `status --json`: jobs whose files came from an archive
        and the money not spent on them, their recorded costs where known (`estimated`: how
        many of them count their estimate instead, `unknown`: how many neither)."""
        jobs, known, estimated, unknown = 0, 0.0, 0, 0
        if self.version >= ARCHIVED_VERSION:
            for cost, estimate in self._conn.execute(
                # CROSS JOIN: from the few archived jobs, not from every job done
                "SELECT a.cost_usd, a.estimate_usd FROM archived a "
                "CROSS JOIN jobs j ON j.idx = a.job_idx WHERE j.state = ?",
                (JobState.DONE.value,),
            ):
                jobs += 1
                if cost is not None:
                    known += cost
                elif estimate is not None:
                    known += estimate
                    estimated += 1
                else:
                    unknown += 1
        return {
            "jobs": jobs,
            "not_spent_usd": usd(known),
            "estimated": estimated,
            "unknown": unknown,
        }
