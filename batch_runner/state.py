"""The SQLite state file: the only record of what was submitted (and possibly paid for).

Writes are journaled per event (one UPDATE or INSERT each) and committed in batches, one
transaction per event-loop tick; `await store.durable()` returns once everything written so far
is on disk, which is how the scheduler commits a submit intent before the POST and a request_id
before anything else happens to that job. Inside an event loop the commit (and its fsync) runs
on one writer thread, so the loop keeps serving the network meanwhile; events written during a
commit form the next batch (a group commit). Reads wait for a commit in flight first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from batch_runner.errors import StateError
from batch_runner.jobs import FileRecord, JobRecord, JobSpec, JobState

STATE_FILE = "state.db"
SCHEMA_VERSION = 1

_V1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    idx INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    inputs TEXT NOT NULL,
    copy INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}',
    vars TEXT NOT NULL DEFAULT '{}',
    sweep INTEGER,
    source TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    request_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    possible_duplicates INTEGER NOT NULL DEFAULT 0,
    in_manifest INTEGER NOT NULL DEFAULT 1,
    outputs TEXT,
    updated_at REAL
);
CREATE INDEX jobs_state ON jobs(state);
CREATE TABLE attempts (
    job_idx INTEGER NOT NULL,
    n INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    PRIMARY KEY (job_idx, n)
);
CREATE TABLE files (
    job_idx INTEGER NOT NULL,
    k INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    url TEXT,
    PRIMARY KEY (job_idx, k)
);
CREATE TABLE retries (cause TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""

# Migrations by target version: MIGRATIONS[v] brings a file at version v-1 to version v.
MIGRATIONS: dict[int, str] = {1: _V1}

_JOB_COLUMNS = (
    "idx, key, model, inputs, copy, meta, vars, sweep, source, state, reason, request_id, "
    "attempts, in_manifest, outputs"
)


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        else:
            # one writer thread commits while the loop runs; `_settle` keeps the two apart
            conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed request_id survives a power loss, not only a killed process
            conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{path}: not a usable state file ({exc})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise StateError(
            f"{path}: state file has schema version {version}, newer than this batch_runner "
            f"understands ({SCHEMA_VERSION}); upgrade batch_runner to continue this run"
        )
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StateError(f"{path}: not a batch_runner state file (unknown tables, no version)")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        for stmt in filter(str.strip, MIGRATIONS[target].split(";")):
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")


class StateStore:
    """Jobs, attempts, files and retry counts of one run directory."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool):
        self._db = conn
        self.path = path
        self.readonly = readonly
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._error: BaseException | None = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._commit_fut: concurrent.futures.Future[None] | None = None  # the commit in flight
        self._commit_waiters: list[asyncio.Future[None]] = []  # resolved when it is on disk
        self._read_conn: sqlite3.Connection | None = None  # reads beside the writer thread

    @property
    def _conn(self) -> sqlite3.Connection:
        """The connection, for use on the caller's thread once no commit is in flight."""
        self._settle()
        return self._db

    def _settle(self) -> None:
        fut = self._commit_fut
        if fut is not None:
            concurrent.futures.wait([fut])
            self._committed(fut)

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
            if not readonly:
                _migrate(conn, path)
            elif conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                raise StateError(f"{path}: not a batch_runner state file")
            conn.execute("SELECT count(*) FROM jobs").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StateError(_os_message(path, exc)) from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(f"{path}: not a usable state file ({exc})") from None
        except StateError:
            conn.close()
            raise
        return cls(conn, path, readonly)

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._settle()
        if self._ops:
            self._flush()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._read_conn is not None:
            self._read_conn.close()
        self._db.close()

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

    def sync_jobs(self, specs: Iterable[JobSpec]) -> tuple[int, int]:
        """Add jobs whose key is new and mark which known jobs are in the manifest.

        Returns (added, not_in_manifest). Existing jobs are never changed or removed.
        """
        known = {k for (k,) in self._conn.execute("SELECT key FROM jobs")}
        next_idx = (self._conn.execute("SELECT max(idx) FROM jobs").fetchone()[0] or 0) + 1
        rows, present = [], set()
        now = time.time()
        for spec in specs:
            key = spec.key
            if key in present:
                continue
            present.add(key)
            if key in known:
                continue
            rows.append(
                (
                    next_idx,
                    key,
                    spec.model,
                    _dump(spec.inputs),
                    spec.copy,
                    _dump(spec.meta),
                    _dump(spec.vars),
                    spec.sweep,
                    str(spec.source) if spec.source else None,
                    JobState.PENDING.value,
                    now,
                )
            )
            next_idx += 1
        with self._tx():
            self._conn.executemany(
                "INSERT INTO jobs(idx, key, model, inputs, copy, meta, vars, sweep, source, state, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self._conn.execute("UPDATE jobs SET in_manifest = 1")
            missing = known - present
            if missing:
                self._conn.executemany(
                    "UPDATE jobs SET in_manifest = 0 WHERE key = ?", [(k,) for k in missing]
                )
        return len(rows), len(known - present)

    def jobs(self, *, with_files: bool = True) -> list[JobRecord]:
        """Every job, in index order (files and request ids attached)."""
        return list(self.iter_jobs(with_files=with_files))

    def iter_jobs(self, *, with_files: bool = True, batch: int = 2000) -> Iterator[JobRecord]:
        """Every job in index order, read `batch` at a time (memory stays flat)."""
        last = 0
        while True:
            chunk = self._load(f"idx > ? ORDER BY idx LIMIT {int(batch)}", (last,), with_files)
            yield from chunk
            if len(chunk) < batch:
                return
            last = chunk[-1].index

    def job(self, idx: int) -> JobRecord:
        """One job, read as committed (no wait for a commit in flight)."""
        return self._load("idx = ?", (idx,), True, conn=self._reader())[0]

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
        rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {where}", params).fetchall()
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
        for idx, rid in conn.execute(
            "SELECT job_idx, request_id FROM attempts WHERE job_idx BETWEEN ? AND ? "
            "ORDER BY job_idx, n",
            (lo, hi),
        ):
            rids.setdefault(idx, []).append(rid)
        return [_record(row, rids.get(row[0], []), files.get(row[0], [])) for row in rows]

    def todo_rows(self) -> Iterator[tuple[int, str, str | None]]:
        """(idx, state, request_id) of every job not failed or cancelled, in index order."""
        yield from self._conn.execute(
            "SELECT idx, state, request_id FROM jobs "
            "WHERE state NOT IN ('failed', 'cancelled') ORDER BY idx"
        )

    def done_files(self) -> Iterator[tuple[int, str, int]]:
        """(job idx, file_name, bytes) of every file of a done job, by job."""
        yield from self._conn.execute(
            "SELECT f.job_idx, f.file_name, f.bytes FROM files f JOIN jobs j ON j.idx = f.job_idx "
            "WHERE j.state = 'done' ORDER BY f.job_idx"
        )

    def count_new(self) -> int:
        """Jobs never submitted."""
        return self._conn.execute(
            "SELECT count(*) FROM jobs WHERE state = 'pending' AND attempts = 0"
        ).fetchone()[0]

    def recover_submitting(self, reason: str) -> int:
        """Submits a crash interrupted become uncertain; returns how many."""
        with self._tx():
            cur = self._conn.execute(
                "UPDATE jobs SET state = 'uncertain', reason = ?, updated_at = ? "
                "WHERE state = 'submitting'",
                (reason, time.time()),
            )
        return cur.rowcount

    def outputs_of(self, idx: int) -> list[str]:
        row = self._conn.execute("SELECT outputs FROM jobs WHERE idx = ?", (idx,)).fetchone()
        return json.loads(row[0]) if row and row[0] else []

    def counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"))

    def summary(self) -> dict[str, Any]:
        """The object `status --json` prints (CONTRACT §2)."""
        counts = self.counts()
        files, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM files"
        ).fetchone()
        dups = self._conn.execute(
            "SELECT coalesce(sum(possible_duplicates), 0) FROM jobs"
        ).fetchone()[0]
        not_in = self._conn.execute("SELECT count(*) FROM jobs WHERE in_manifest = 0").fetchone()[0]
        failures = [
            {"index": idx, "key": key, "state": state, "reason": reason, "request_id": rid}
            for idx, key, state, reason, rid in self._conn.execute(
                "SELECT idx, key, state, reason, request_id FROM jobs "
                "WHERE state IN ('failed', 'cancelled', 'uncertain') ORDER BY idx LIMIT 1000"
            )
        ]
        return {
            "jobs": sum(counts.values()),
            "counts": counts,
            "files": files,
            "bytes": size,
            "possible_duplicates": dups,
            "not_in_manifest": not_in,
            "retries": self.retry_counts(),
            "failures": failures,
        }

    def retry_counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT cause, n FROM retries ORDER BY n DESC"))

    def file_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM files").fetchone()[0]

    # ---- events (journaled, committed per tick) ------------------------------------------

    def set_state(self, idx: int, state: JobState, reason: str | None = None) -> None:
        self._write(
            "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE idx = ?",
            (state.value, reason, time.time(), idx),
        )

    def mark_submitting(self, idx: int, *, duplicate_risk: bool) -> None:
        self._write(
            "UPDATE jobs SET state = 'submitting', reason = NULL, request_id = NULL, "
            "possible_duplicates = possible_duplicates + ?, updated_at = ? WHERE idx = ?",
            (1 if duplicate_risk else 0, time.time(), idx),
        )

    def record_request_id(self, idx: int, attempt: int, request_id: str) -> None:
        now = time.time()
        self._write(
            "UPDATE jobs SET state = 'queued', request_id = ?, attempts = ?, outputs = NULL, "
            "updated_at = ? WHERE idx = ?",
            (request_id, attempt, now, idx),
        )
        self._write(
            "INSERT OR REPLACE INTO attempts(job_idx, n, request_id, submitted_at) "
            "VALUES (?,?,?,?)",
            (idx, attempt, request_id, now),
        )

    def record_outputs(self, idx: int, urls: list[str]) -> None:
        self._write(
            "UPDATE jobs SET state = 'downloading', outputs = ?, updated_at = ? WHERE idx = ?",
            (json.dumps(urls), time.time(), idx),
        )

    def record_file(self, idx: int, f: FileRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO files(job_idx, k, file_name, sha256, bytes, url) "
            "VALUES (?,?,?,?,?,?)",
            (idx, f.k, f.file_name, f.sha256, f.bytes, None),
        )

    def forget_files(self, idx: int) -> None:
        self._write("DELETE FROM files WHERE job_idx = ?", (idx,))

    def count_retry(self, cause: str) -> None:
        self._write(
            "INSERT INTO retries(cause, n) VALUES (?, 1) "
            "ON CONFLICT(cause) DO UPDATE SET n = n + 1",
            (cause,),
        )

    async def durable(self) -> None:
        """Wait until every event written so far is committed to disk."""
        await self.durable_future()

    def durable_future(self) -> asyncio.Future[None]:
        """A future resolved once every event written so far is on disk (in call order)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self._error is not None:
            fut.set_exception(self._error)
        elif self._ops:
            self._waiters.append(fut)
        elif self._commit_fut is not None:
            self._commit_waiters.append(fut)  # our events may be in the commit in flight
        else:
            fut.set_result(None)
        return fut

    def flush(self) -> None:
        """Commit pending events now (used at shutdown and outside an event loop)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._flush()

    # ---- internals -----------------------------------------------------------------------

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        if self._error is not None:
            raise self._error
        self._ops.append((sql, params))
        if self._flush_handle is None and self._commit_fut is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush()
                return
            self._flush_handle = loop.call_soon(self._start_commit)

    def _start_commit(self) -> None:
        """Hand this tick's events to the writer thread (one commit in flight at a time)."""
        self._flush_handle = None
        if self._commit_fut is not None or not self._ops:
            return
        ops, self._commit_waiters = self._ops, self._waiters
        self._ops, self._waiters = [], []
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, "state-writer")
        fut = self._writer.submit(self._commit, ops)
        self._commit_fut = fut
        asyncio.wrap_future(fut).add_done_callback(lambda _: self._committed(fut))

    def _committed(self, fut: concurrent.futures.Future[None]) -> None:
        """Wake the waiters of a finished commit (once), then commit what came in meanwhile."""
        if self._commit_fut is not fut:
            return  # already handled by _settle
        self._commit_fut = None
        waiters, self._commit_waiters = self._commit_waiters, []
        exc = fut.exception()
        if exc is not None:
            self._error = self._error or exc
        _resolve(waiters, exc)
        if self._ops and self._flush_handle is None and self._error is None:
            with contextlib.suppress(RuntimeError):  # no loop: flush() or close() commits them
                self._flush_handle = asyncio.get_running_loop().call_soon(self._start_commit)

    def _commit(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        """One transaction for `ops`; on the writer thread, or on the caller's when settled."""
        with _Transaction(self._db, self.path):
            for sql, params in ops:
                self._db.execute(sql, params)

    def _flush(self) -> None:
        self._flush_handle = None
        self._settle()
        ops, waiters = self._ops, self._waiters
        self._ops, self._waiters = [], []
        try:
            if ops:
                self._commit(ops)
        except StateError as exc:
            self._error = exc
            _resolve(waiters, exc)
            return
        _resolve(waiters, None)

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn, self.path)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, with sqlite errors translated into StateError."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self._path = path

    def __enter__(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StateError(_os_message(self._path, exc)) from None

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._conn.execute("COMMIT")
                return False
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise StateError(_os_message(self._path, err)) from None
        if isinstance(exc, sqlite3.Error):
            raise StateError(_os_message(self._path, exc)) from None
        return False


def _resolve(waiters: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for w in waiters:
        if not w.done():
            if exc is None:
                w.set_result(None)
            else:
                w.set_exception(exc)


def _os_message(path: Path, exc: BaseException) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"{path}: cannot write the state file (read-only file or directory)"
    if "disk is full" in text or "full" in text:
        return f"{path}: cannot write the state file: disk full (nothing already submitted is lost)"
    if "locked" in text:
        return f"{path}: state file is locked by another process"
    return f"{path}: state file error: {text}"


def _record(row: tuple[Any, ...], rids: list[str], files: list[FileRecord]) -> JobRecord:
    (idx, key, model, inputs, copy, meta, vars_, sweep, source, state, reason, rid, attempts) = row[
        :13
    ]
    return JobRecord(
        key=key,
        index=idx,
        model=model,
        inputs=json.loads(inputs),
        state=JobState(state),
        copy=copy,
        meta=json.loads(meta),
        vars=json.loads(vars_),
        sweep=sweep,
        source=source,
        reason=reason,
        request_id=rid,
        request_ids=rids,
        attempts=attempts,
        files=files,
        in_manifest=bool(row[13]),
    )


def _dump(value: Any) -> str:
    # the manifest's field order is kept (the report's sweep axes follow it); keys are
    # computed from sorted JSON elsewhere (jobs.job_key)
    return json.dumps(value, ensure_ascii=False)
