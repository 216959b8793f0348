"""The state file's schema, one named migration per version (a run directory from any earlier
release opens: it is brought up to date when opened for writing)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from batch_runner.errors import StateError


@dataclass(frozen=True)
class Migration:
    """SQL that brings a file at version `version - 1` to `version`."""

    version: int
    name: str
    sql: str


_JOBS_V1 = """
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
)"""
# version 2's table is version 1's without request_id, built beside it, then renamed
_JOBS_V2 = _JOBS_V1.replace("    request_id TEXT,\n", "").replace("TABLE jobs", "TABLE jobs_v2")

MIGRATIONS = (
    Migration(
        1,
        "first release",
        f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
{_JOBS_V1};
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
""",
    ),
    # the attempts table becomes the one record of request ids (jobs.request_id was a second
    # copy of the last one, and went stale when a failed generation sent the job back to
    # pending); the table is rebuilt rather than ALTER … DROP COLUMN, which needs SQLite 3.35
    Migration(
        2,
        "request ids only in attempts",
        f"""
INSERT OR IGNORE INTO attempts(job_idx, n, request_id, submitted_at)
    SELECT idx, attempts, request_id, coalesce(updated_at, 0) FROM jobs
    WHERE request_id IS NOT NULL AND attempts > 0;
{_JOBS_V2};
INSERT INTO jobs_v2 SELECT idx, key, model, inputs, copy, meta, vars, sweep, source, state,
    reason, attempts, possible_duplicates, in_manifest, outputs, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE INDEX jobs_state ON jobs(state);
""",
    ),
    # money (CONTRACT §6): what each attempt cost (from /result?include_cost=true) and each
    # job's estimate (its price as the run computed it), NULL where unknown
    Migration(
        3,
        "costs and estimates",
        """
ALTER TABLE attempts ADD COLUMN cost_usd REAL;
ALTER TABLE jobs ADD COLUMN estimate_usd REAL;
""",
    ),
    # the model that ran each attempt, as /result names it (`model_id`, CONTRACT §1); reads
    # of an older file opened read-only leave it out
    Migration(4, "model ids of attempts", "ALTER TABLE attempts ADD COLUMN model_id TEXT;"),
    # pipelines (CONTRACT §3): each staged job's stage, and a child's parent job and file
    Migration(
        5,
        "pipeline lineage",
        """
CREATE TABLE lineage (
    job_idx INTEGER PRIMARY KEY,
    stage TEXT NOT NULL,
    parent_key TEXT,
    parent_file TEXT
);
CREATE INDEX lineage_stage ON lineage(stage);
""",
    ),
    # jobs whose files were taken from an --archive (store/archived.py): the run directory
    # they came from and what they cost there (the money this run did not spend)
    Migration(
        6,
        "jobs taken from an archive",
        """
CREATE TABLE archived (
    job_idx INTEGER PRIMARY KEY,
    run_dir TEXT NOT NULL,
    cost_usd REAL,
    estimate_usd REAL,
    taken_at REAL NOT NULL
);
""",
    ),
    # keep/reject marks set from `serve` (store/marks.py): one per job key, NULL once cleared
    Migration(
        7,
        "keep/reject marks",
        "CREATE TABLE marks (key TEXT PRIMARY KEY, mark TEXT, marked_at REAL NOT NULL);",
    ),
    # `status` of a million jobs in well under a second: its sums read two indexes, never the
    # rows (~600 B each). jobs_totals covers every column store/costs.py job_groups groups and
    # adds (its GROUP BY walks the index in order: no sort); jobs_state gains updated_at, so
    # the ETA's last jobs done are the end of an index range (store/eta.py). ~2.3 s per
    # million jobs to build, one transaction; +~77 MB per million. IF (NOT) EXISTS: a file
    # whose version was set back by hand (tests do) migrates again.
    Migration(
        8,
        "indexes for the summary",
        """
CREATE INDEX IF NOT EXISTS jobs_totals
    ON jobs(state, model, reason, possible_duplicates, in_manifest, estimate_usd);
DROP INDEX IF EXISTS jobs_state;
CREATE INDEX jobs_state ON jobs(state, updated_at);
""",
    ),
    # a job taken from an --archive: the request that made its files in the archived run, so
    # a pipeline's child of it gets fresh URLs from that request's /result (never an attempt
    # of this run: nothing was sent or paid for here). A table beside `archived`, not a
    # column of it: IF NOT EXISTS, so a file whose version was set back migrates again
    Migration(
        9,
        "request ids of archived jobs",
        "CREATE TABLE IF NOT EXISTS archived_requests "
        "(job_idx INTEGER PRIMARY KEY, request_id TEXT NOT NULL);",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
# the oldest version the reads understand as it is (a read-only open cannot migrate); every
# read names its columns, and version 2 only took one away
OLDEST_READABLE = 1


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file up to SCHEMA_VERSION, one transaction per migration."""
    version = schema_version(conn)
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StateError(f"{path}: not a batch_runner state file (unknown tables, no version)")
    for migration in MIGRATIONS[version:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in filter(str.strip, migration.sql.split(";")):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {migration.version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def check_readable(conn: sqlite3.Connection, path: Path) -> None:
    """A file opened read-only must already be one the reads understand."""
    if not OLDEST_READABLE <= schema_version(conn) <= SCHEMA_VERSION:
        raise StateError(f"{path}: not a batch_runner state file")
