"""The SQLite state file: the only record of what was submitted (and possibly paid for).

This module holds opening, syncing the manifest's jobs and the reads of jobs; the events a
run writes are `store/events.py`, the summary reads `store/summary.py`. The schema and its
migrations live in `batch_runner.store.migrations`; how events are journaled and
group-committed (durable before the caller acts on them) in `batch_runner.store.journal`,
which StateStore extends.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batch_runner import jsonenc
from batch_runner.errors import StateError
from batch_runner.jobs import (
    FileRecord,
    JobRecord,
    JobState,
    check_move,
)
from batch_runner.store.archived import ArchivedJobs
from batch_runner.store.costs import Money
from batch_runner.store.events import Events
from batch_runner.store.journal import os_message
from batch_runner.store.lineage import Lineage
from batch_runner.store.marks import marks_between
from batch_runner.store.migrations import SCHEMA_VERSION, check_readable, migrate, schema_version
from batch_runner.store.summary import Summaries
from batch_runner.store.sync import JobSync

STATE_FILE = "state.db"
MODEL_ID_VERSION = 4  # the schema version that added attempts.model_id

_JOB_COLUMNS = (
    "idx, key, model, inputs, copy, meta, vars, sweep, source, state, reason, attempts, "
    "in_manifest, outputs, {estimate}, possible_duplicates"
)
S = JobState
_FINISHED = (S.FAILED.value, S.CANCELLED.value)  # nothing more to do for these
_FAILURES = (S.FAILED.value, S.CANCELLED.value, S.UNCERTAIN.value)  # what the summary lists


def _connect(path: Path, *, readonly: bool, deferred: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        else:
            # one writer thread commits while the loop runs; `_settle` keeps the two apart
            conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        version = schema_version(conn)
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed request_id survives a power loss, not only a killed process
            # (`deferred`: NORMAL until the first event, see Journal.sync_commits)
            conn.execute(f"PRAGMA synchronous = {'NORMAL' if deferred else 'FULL'}")
    except sqlite3.DatabaseError as exc:
        raise StateError(_unusable(path, exc)) from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StateError(
            f"{path}: state file has schema version {version}, newer than this batch_runner "
            f"understands ({SCHEMA_VERSION}); upgrade batch_runner to continue this run"
        )
    return conn


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> str:
    """Why the state file cannot be opened: permissions read like corruption in SQLite's words."""
    if not os.access(path, os.R_OK):
        return f"{path}: permission denied (cannot read the state file)"
    if isinstance(exc, sqlite3.OperationalError) and not os.access(path.parent, os.W_OK):
        return (
            f"{path.parent}: the run directory is read-only or not permitted (SQLite must write "
            f"{path.name}-wal and -shm beside the state file, also to read it); "
            "fix its permissions or copy the directory somewhere writable"
        )
    return f"{path}: not a usable state file ({exc})"


class StateStore(ArchivedJobs, Money, Lineage, JobSync, Summaries, Events):
    """Jobs, attempts, files and retry counts of one run directory (a context manager:
    `with StateStore.open(run_dir, readonly=True) as store:` closes it after)."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, run_dir: Path, *, create: bool = False, readonly: bool = False, deferred: bool = False
    ) -> StateStore:
        """`deferred`: the set-up before a run sends anything (the schema made or migrated,
        the manifest's jobs added, settings remembered) commits without waiting for the disk;
        the first journaled event, or `sync_commits()`, makes commits durable again (and,
        the state file being a write-ahead log, the earlier ones with them)."""
        path = run_dir / STATE_FILE
        if not path.exists():
            if not create:
                raise StateError(f"{run_dir}: no state file here ({STATE_FILE} is missing)")
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"{run_dir}: cannot create run directory ({exc.strerror})"
                ) from None
        elif path.is_dir():
            raise StateError(f"{path}: is a directory, not a state file")
        conn = _connect(path, readonly=readonly, deferred=deferred and not readonly)
        try:
            if readonly:
                check_readable(conn, path)
            else:
                migrate(conn, path)
            conn.execute("SELECT count(*) FROM jobs").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StateError(os_message(path, exc)) from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(f"{path}: not a usable state file ({exc})") from None
        except StateError:
            conn.close()
            raise
        store = cls(conn, path, readonly)
        store.deferred = deferred and not readonly
        store.version = schema_version(conn)
        return store

    # ---- meta ----------------------------------------------------------------------------

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, values: dict[str, Any]) -> None:
        with self._tx():
            self._conn.executemany(
                "INSERT INTO meta(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    # ---- jobs ----------------------------------------------------------------------------

    def jobs(self, *, with_files: bool = True) -> list[JobRecord]:
        """Every job, in index order (files and request ids attached)."""
        return list(self.iter_jobs(with_files=with_files))

    def iter_jobs(self, *, with_files: bool = True, batch: int = 2000) -> Iterator[JobRecord]:
        """Every job in index order, read `batch` at a time (memory stays flat)."""
        return self._iter("", (), with_files, batch)

    def iter_sweep(
        self, sweep: int | None, span: tuple[int, int] = (0, 2**62), *, batch: int = 2000
    ) -> Iterator[JobRecord]:
        """The jobs of one sweep entry (None: jobs from `jobs:`) with files, in index order;
        `span` (first, last index, from `sweep_spans`) bounds the scan."""
        return self._iter("sweep IS ? AND idx <= ? AND ", (sweep, span[1]), True, batch, span[0])

    def sweep_spans(self) -> dict[int | None, tuple[int, int, int]]:
        """(jobs, first index, last index) of each sweep entry (None: jobs from `jobs:`)."""
        rows = self._conn.execute(
            "SELECT sweep, count(*), min(idx), max(idx) FROM jobs GROUP BY sweep"
        )
        return {sweep: (n, lo, hi) for sweep, n, lo, hi in rows}

    def _iter(
        self, where: str, params: tuple[Any, ...], with_files: bool, batch: int, first: int = 1
    ) -> Iterator[JobRecord]:
        last = first - 1
        while True:
            chunk = self._load(
                f"{where}idx > ? ORDER BY idx LIMIT {int(batch)}", (*params, last), with_files
            )
            yield from chunk
            if len(chunk) < batch:
                return
            last = chunk[-1].index

    def jobs_at(self, indexes: list[int]) -> list[JobRecord]:
        """The jobs at `indexes` (at most 500; ascending), read as committed, in one query."""
        marks = ",".join("?" * len(indexes))
        return self._load(f"idx IN ({marks}) ORDER BY idx", tuple(indexes), True, self._reader())

    def _reader(self) -> sqlite3.Connection:
        if self._read_conn is None:
            self._read_conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        return self._read_conn

    def _load(
        self,
        where: str,
        params: tuple[Any, ...],
        with_files: bool,
        conn: sqlite3.Connection | None = None,
    ) -> list[JobRecord]:
        conn = conn or self._conn
        columns = _JOB_COLUMNS.format(estimate=self._money("estimate_usd"))
        rows = conn.execute(f"SELECT {columns} FROM jobs WHERE {where}", params).fetchall()
        if not rows:
            return []
        lo, hi = rows[0][0], rows[-1][0]
        files: dict[int, list[FileRecord]] = {}
        if with_files:
            for idx, k, name, sha, size, url in conn.execute(
                "SELECT job_idx, k, file_name, sha256, bytes, url FROM files "
                "WHERE job_idx BETWEEN ? AND ? ORDER BY job_idx, k",
                (lo, hi),
            ):
                files.setdefault(idx, []).append(FileRecord(name, k, sha, size, url))
        rids: dict[int, list[str]] = {}
        costs: dict[int, float | None] = {}  # the last attempt's
        model_ids: dict[int, str | None] = {}  # the last attempt's
        for idx, rid, cost, model_id in conn.execute(
            f"SELECT job_idx, request_id, {self._money('cost_usd')}, "
            f"{self._model_id_column()} FROM attempts "
            "WHERE job_idx BETWEEN ? AND ? ORDER BY job_idx, n",
            (lo, hi),
        ):
            rids.setdefault(idx, []).append(rid)
            costs[idx] = cost
            model_ids[idx] = model_id
        records = [
            _record(row, rids.get(row[0], []), files.get(row[0], []), costs.get(row[0]))
            for row in rows
        ]
        sources = self.archived_sources(conn, lo, hi)
        marks = marks_between(conn, self.version, lo, hi)
        for rec in records:
            rec.model_id = model_ids.get(rec.index)
            rec.archived_from, rec.archived_request_id = sources.get(rec.index, (None, None))
            rec.mark = marks.get(rec.index)
        self.attach_lineage(records, conn)
        return records

    def _model_id_column(self) -> str:
        """`model_id`, or NULL in a file from before version 4 (opened read-only)."""
        return "model_id" if self.version >= MODEL_ID_VERSION else "NULL"

    def recent_done(self, limit: int) -> list[tuple[float, JobRecord]]:
        """The `limit` jobs done last, newest first, each with when it was done (epoch s)."""
        rows = self._conn.execute(
            "SELECT idx, updated_at FROM jobs WHERE state = ? "
            "ORDER BY updated_at DESC, idx DESC LIMIT ?",
            (S.DONE.value, limit),
        ).fetchall()
        when = dict(rows)
        found: dict[int, JobRecord] = {}
        order = sorted(when)
        for i in range(0, len(order), 500):
            chunk = order[i : i + 500]
            where = f"idx IN ({','.join('?' * len(chunk))}) ORDER BY idx"
            found |= {rec.index: rec for rec in self._load(where, tuple(chunk), True)}
        return [(when[idx] or 0.0, found[idx]) for idx, _ in rows if idx in found]

    def todo_rows(self) -> Iterator[tuple[int, str, int]]:
        """(idx, state, possible duplicates) of every job not failed or cancelled, by index."""
        yield from self._conn.execute(
            "SELECT idx, state, possible_duplicates FROM jobs WHERE state NOT IN (?, ?) "
            "ORDER BY idx",
            _FINISHED,
        )

    def done_files(self) -> Iterator[tuple[int, str, int]]:
        """(job idx, file_name, bytes) of every file of a done job, by job."""
        yield from self._conn.execute(
            "SELECT f.job_idx, f.file_name, f.bytes FROM files f JOIN jobs j ON j.idx = f.job_idx "
            "WHERE j.state = ? ORDER BY f.job_idx",
            (S.DONE.value,),
        )

    def count_new(self) -> int:
        """Jobs never submitted."""
        return self._conn.execute(
            "SELECT count(*) FROM jobs WHERE state = ? AND attempts = 0", (S.PENDING.value,)
        ).fetchone()[0]

    def attempts_in(self, state: JobState) -> dict[int, int]:
        """Attempts so far of every job in `state`, by index."""
        rows = self._conn.execute("SELECT idx, attempts FROM jobs WHERE state = ?", (state.value,))
        return dict(rows.fetchall())

    def move_all(self, old: JobState, new: JobState, reason: str | None) -> int:
        """Every job in state `old` moves to `new` (one checked move for all); returns how many."""
        check_move(old, new)
        with self._tx():
            cur = self._conn.execute(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE state = ?",
                (new.value, reason, time.time(), old.value),
            )
        return cur.rowcount


_STATES = {s.value: s for s in JobState}


def _record(
    row: tuple[Any, ...], rids: list[str], files: list[FileRecord], cost: float | None
) -> JobRecord:
    (idx, key, model, inputs, copy, meta, vars_, sweep, source, state, reason, attempts) = row[:12]
    return JobRecord(
        key=key,
        index=idx,
        model=model,
        inputs=json.loads(inputs),
        state=_STATES.get(state) or JobState(state),
        copy=copy,
        meta={} if meta == "{}" else json.loads(meta),
        vars={} if vars_ == "{}" else json.loads(vars_),
        sweep=sweep,
        source=source,
        reason=reason,
        request_ids=rids,
        attempts=attempts,
        files=files,
        in_manifest=bool(row[12]),
        estimate_usd=row[14],
        cost_usd=cost,
        duplicates=row[15] or 0,
    )


def _dump(value: Any) -> str:
    # the manifest's field order is kept (the report's sweep axes follow it); keys are
    # computed from sorted JSON elsewhere (jobs.job_key)
    return "{}" if value == {} else jsonenc.text(value)
