"""The SQLite state file: the only record of what was submitted (and possibly paid for).

This module holds opening, the reads, and the events a run writes (each told the state it
records: which move a job makes is decided and checked elsewhere). The schema and its
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
    NOT_POLLED,
    FileRecord,
    JobRecord,
    JobState,
    check_move,
    current_request_id,
)
from batch_runner.store.archived import ArchivedJobs
from batch_runner.store.costs import Money, cost_summary
from batch_runner.store.journal import os_message
from batch_runner.store.lineage import Lineage
from batch_runner.store.migrations import SCHEMA_VERSION, check_readable, migrate, schema_version
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


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
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
            conn.execute("PRAGMA synchronous = FULL")
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


class StateStore(ArchivedJobs, Money, Lineage, JobSync):
    """Jobs, attempts, files and retry counts of one run directory."""

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, run_dir: Path, *, create: bool = False, readonly: bool = False) -> StateStore:
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
        conn = _connect(path, readonly=readonly)
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
        for rec in records:
            rec.model_id = model_ids.get(rec.index)
            rec.archived_from = sources.get(rec.index)
        self.attach_lineage(records, conn)
        return records

    def _model_id_column(self) -> str:
        """`model_id`, or NULL in a file from before version 4 (opened read-only)."""
        return "model_id" if self.version >= MODEL_ID_VERSION else "NULL"

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

    def counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"))

    def summary(self) -> dict[str, Any]:
        """The object `status --json` prints (CONTRACT §2)."""
        # the counts and the queued jobs not polled yet in one statement: one snapshot, also
        # while a run commits
        counts, not_polled = {}, 0
        for state, n, unseen in self._conn.execute(
            "SELECT state, count(*), sum(reason IS ?) FROM jobs GROUP BY state", (NOT_POLLED,)
        ):
            counts[state] = n
            not_polled += unseen if state == S.QUEUED.value else 0
        files, size = self.file_totals()
        dups = self._conn.execute(
            "SELECT coalesce(sum(possible_duplicates), 0) FROM jobs"
        ).fetchone()[0]
        not_in = self._conn.execute("SELECT count(*) FROM jobs WHERE in_manifest = 0").fetchone()[0]
        failures = [
            {
                "index": idx,
                "key": key,
                "state": state,
                "reason": reason,
                "request_id": current_request_id(JobState(state), [rid] if rid else []),
            }
            for idx, key, state, reason, rid in self._conn.execute(
                "SELECT j.idx, j.key, j.state, j.reason, a.request_id FROM jobs j "
                "LEFT JOIN attempts a ON a.job_idx = j.idx AND a.n = j.attempts "
                "WHERE j.state IN (?, ?, ?) ORDER BY j.idx LIMIT 1000",
                _FAILURES,
            )
        ]
        return {
            "jobs": sum(counts.values()),
            "counts": counts,
            "cost": cost_summary(self),
            "models": self.model_counts(),
            "files": files,
            "bytes": size,
            "possible_duplicates": dups,
            **({"stages": stages} if (stages := self.stage_summary()) else {}),
            "not_in_manifest": not_in,
            "not_polled": not_polled,  # of the queued: submitted, not seen by a poll yet
            "retries": self.retry_counts(),
            "from_archive": self.archive_summary(),  # jobs whose files came from --archive
            "failures": failures,
        }

    def last_activity(self) -> float | None:
        """When a job last changed (epoch seconds; None without jobs)."""
        return self._conn.execute("SELECT max(updated_at) FROM jobs").fetchone()[0]

    def retry_counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT cause, n FROM retries ORDER BY n DESC"))

    def file_count(self) -> int:
        return self.file_totals()[0]

    def files_under(self, folder: str) -> int:
        """Files whose name starts with `folder` (e.g. "images/train/"; no LIKE: names may
        hold `%` and `_`)."""
        return self._conn.execute(
            "SELECT count(*) FROM files WHERE substr(file_name, 1, ?) = ?", (len(folder), folder)
        ).fetchone()[0]

    def file_totals(self) -> tuple[int, int]:
        """(files, bytes) over every job."""
        files, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM files"
        ).fetchone()
        return files, size

    # ---- events (journaled, committed per tick) ------------------------------------------
    # Each records the state it is given: which move a job makes is decided (and checked
    # against jobs.TRANSITIONS) by the caller, never here. Lazy ones (journal.py) record what
    # the API said and would say again to a resumed run: they wait for the next commit.

    def set_state(
        self, idx: int, state: JobState, reason: str | None = None, *, lazy: bool = False
    ) -> None:
        """`lazy`: a state a poll saw (queued, running), not one this run decided."""
        self._write(
            "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE idx = ?",
            (state.value, reason, time.time(), idx),
            lazy=lazy,
        )

    def mark_submitting(self, idx: int, state: JobState, *, duplicate_risk: bool) -> None:
        """The intent to submit (`duplicate_risk`: an earlier submit's answer was lost)."""
        self._write(
            "UPDATE jobs SET state = ?, reason = NULL, "
            "possible_duplicates = possible_duplicates + ?, updated_at = ? WHERE idx = ?",
            (state.value, 1 if duplicate_risk else 0, time.time(), idx),
        )

    def record_request_id(
        self, idx: int, state: JobState, attempt: int, request_id: str, reason: str | None = None
    ) -> None:
        """Attempt number `attempt` was accepted as `request_id` (the one record of it)."""
        now = time.time()
        self._write(
            "UPDATE jobs SET state = ?, reason = ?, attempts = ?, outputs = NULL, "
            "updated_at = ? WHERE idx = ?",
            (state.value, reason, attempt, now, idx),
        )
        self._write(
            "INSERT OR REPLACE INTO attempts(job_idx, n, request_id, submitted_at) "
            "VALUES (?,?,?,?)",
            (idx, attempt, request_id, now),
        )

    def record_outputs(self, idx: int, state: JobState, urls: list[str]) -> None:
        """The file URLs of a completed job (lazy: a resumed run asks /result again)."""
        self._write(
            "UPDATE jobs SET state = ?, reason = NULL, outputs = ?, updated_at = ? WHERE idx = ?",
            (state.value, json.dumps(urls), time.time(), idx),
            lazy=True,
        )

    def record_model_id(self, idx: int, attempt: int, model_id: str) -> None:
        """The model /result says ran attempt number `attempt` (lazy, like the outputs)."""
        self._write(
            "UPDATE attempts SET model_id = ? WHERE job_idx = ? AND n = ?",
            (model_id, idx, attempt),
            lazy=True,
        )

    def record_file(self, idx: int, f: FileRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO files(job_idx, k, file_name, sha256, bytes, url) "
            "VALUES (?,?,?,?,?,?)",
            (idx, f.k, f.file_name, f.sha256, f.bytes, f.url),  # a child is sent the url
        )

    def count_retry(self, cause: str) -> None:
        self._write(
            "INSERT INTO retries(cause, n) VALUES (?, 1) "
            "ON CONFLICT(cause) DO UPDATE SET n = n + 1",
            (cause,),
        )


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
