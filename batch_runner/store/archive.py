"""The `--archive FILE`: one SQLite file that many runs on one machine share (yt-dlp's
`--download-archive` idea). It maps a job key to the run directory that holds its files (with
their names, sha256, sizes, media types) and what the job cost there.

Several processes may use it at once: WAL mode (readers never wait for a writer), a long busy
timeout, and only short transactions (a few hundred rows each), so a writer waits for another
for milliseconds, never for a whole run. Nothing here trusts an entry: whoever takes files from
it checks their sha256 (run/archived.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from batch_runner.errors import UsageError

APPLICATION_ID = 0x62724172  # "brAr": a batch_runner archive (a state.db is refused)
VERSION = 1
BUSY_MS = 60_000  # a writer waits this long for another's transaction (each is short)
CHUNK = 250  # rows per lookup and per write transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    run_dir TEXT NOT NULL,
    model TEXT NOT NULL,
    files TEXT NOT NULL,
    cost_usd REAL,
    estimate_usd REAL,
    request_id TEXT,
    finished_at REAL NOT NULL
)"""
_COLUMNS = "key, run_dir, model, files, cost_usd, estimate_usd, request_id, finished_at"


@dataclass(frozen=True)
class ArchivedFile:
    file_name: str  # relative to the entry's run directory
    sha256: str
    bytes: int
    media_type: str
    # the URL the API gave it (a pipeline's child is sent it); absent in entries written
    # before URLs were kept, and then left out of the JSON
    url: str | None = None

    def as_json(self) -> dict[str, object]:
        data = dict(self.__dict__)
        if self.url is None:
            del data["url"]
        return data

    @classmethod
    def of_json(cls, data: dict[str, object]) -> ArchivedFile:
        """A file of an entry's JSON (fields a later release adds are left out)."""
        return cls(**{k: v for k, v in data.items() if k in _FILE_FIELDS})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Entry:
    """One archived job: where its files are and what it cost there."""

    key: str
    run_dir: str  # absolute
    model: str
    files: tuple[ArchivedFile, ...]
    cost_usd: float | None = None
    estimate_usd: float | None = None
    request_id: str | None = None
    finished_at: float = 0.0

    def row(self) -> tuple[object, ...]:
        files = json.dumps([f.as_json() for f in self.files], separators=(",", ":"))
        return (
            self.key,
            self.run_dir,
            self.model,
            files,
            self.cost_usd,
            self.estimate_usd,
            self.request_id,
            self.finished_at or time.time(),
        )


class Archive:
    """An open archive file; `with Archive.open(path) as archive: ...`."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Archive:
        if path.is_dir():
            raise UsageError(f"--archive {path}: is a directory, not an archive file")
        if not path.parent.is_dir():
            raise UsageError(
                f"--archive {path}: folder {path.parent} does not exist "
                "(--no-archive runs without the archive a run directory remembers)"
            )
        try:
            conn = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise UsageError(f"--archive {path}: cannot open ({exc})") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            _set_up(conn, path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise UsageError(f"--archive {path}: {_why(path, exc)}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def lookup(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The entries of these keys that the archive holds."""
        found: dict[str, Entry] = {}
        for part in _chunks(keys):
            marks = ",".join("?" * len(part))
            rows = self._call(
                lambda p=part, m=marks: self._conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE key IN ({m})", p
                ).fetchall()
            )
            for row in rows:
                found[row[0]] = _entry(row)
        return found

    def add(self, entries: Iterable[Entry], *, replace: bool) -> int:
        """Add entries, a short transaction per CHUNK; `replace`: over an entry of the same
        key (a job this run finished), else only where the key is new. Returns rows written."""
        verb = (
            f"INSERT OR REPLACE INTO jobs({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
            if replace
            else f"INSERT OR IGNORE INTO jobs({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
        )
        written = 0
        for part in _chunks(list(entries)):
            rows = [e.row() for e in part]
            written += self._call(lambda r=rows: self._write(verb, r))
        return written

    def drop(self, entry: Entry) -> None:
        """Remove an entry found untrustworthy (unless it was replaced meanwhile)."""
        self._call(
            lambda: self._write(
                "DELETE FROM jobs WHERE key = ? AND run_dir = ? AND finished_at = ?",
                [(entry.key, entry.run_dir, entry.finished_at)],
            )
        )

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> int:
        self._conn.execute("BEGIN IMMEDIATE")  # the write lock now: never upgraded midway
        try:
            before = self._conn.total_changes
            self._conn.executemany(sql, rows)
            changed = self._conn.total_changes - before
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return changed

    def _call(self, fn):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except sqlite3.Error as exc:
            raise UsageError(f"--archive {self.path}: {_why(self.path, exc)}") from None


def _set_up(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode, and the table in a new file; a file of something else is refused."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")  # a lasting property of the file
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app == 0 and tables == 0:  # a new (empty) file
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {VERSION}")
        elif app != APPLICATION_ID:
            raise sqlite3.DatabaseError(
                "not a batch_runner archive (a SQLite file of another kind)"
            )
        elif version > VERSION:
            raise sqlite3.DatabaseError(
                f"archive version {version} is newer than this batch_runner understands "
                f"({VERSION}); upgrade batch_runner"
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _why(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text or "unable to open" in text:
        return f"cannot write the archive or its folder ({text}; SQLite writes FILE-wal beside it)"
    if "file is not a database" in text:
        return "not a batch_runner archive (not a SQLite file)"
    return text


def _entry(row: tuple[object, ...]) -> Entry:
    files = tuple(ArchivedFile.of_json(f) for f in json.loads(str(row[3])))
    return Entry(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        files,
        row[4],  # type: ignore[arg-type]
        row[5],  # type: ignore[arg-type]
        row[6],  # type: ignore[arg-type]
        float(row[7]),  # type: ignore[arg-type]
    )


_FILE_FIELDS = frozenset(ArchivedFile.__dataclass_fields__)


def _chunks(items: Sequence) -> Iterator[Sequence]:  # type: ignore[type-arg]
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
