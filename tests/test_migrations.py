"""State files of earlier releases still open: read-only as they are, migrated when opened for
writing (version 1 kept the current request_id in a `jobs` column as well as in `attempts`)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, sim_env

from batch_runner.errors import StateError
from batch_runner.jobs import JobState, job_key
from batch_runner.store.migrations import MIGRATIONS, SCHEMA_VERSION
from batch_runner.store.state import STATE_FILE, StateStore

S = JobState
MODEL = "bytedance/seedream-5/lite/text-to-image"
V1_JOB = (
    "INSERT INTO jobs(idx, key, model, inputs, state, reason, request_id, attempts, updated_at) "
    "VALUES (?,?,?,?,?,?,?,?,?)"
)


def _v1_file(run_dir: Path) -> Path:
    """A version-1 state file as that release left it after a run stopped (Ctrl-C)."""
    run_dir.mkdir(exist_ok=True)
    path = run_dir / STATE_FILE
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0].sql)
    conn.execute("PRAGMA user_version = 1")
    rows = [
        # idx, prompt, state, reason, jobs.request_id, attempts, ids in `attempts`
        (1, "done", "done", None, "r1", 1, ["r1"]),
        # a failed generation sent it back to pending; version 1 left the old id in the column
        (2, "retry", "pending", "attempt 1 failed: boom", "r2", 1, ["r2"]),
        (3, "lost", "uncertain", "submit answer lost", None, 1, ["r3"]),
        # a copy only in the column (never written so by release 1, but it loses nothing)
        (4, "queued", "queued", None, "r4-b", 2, ["r4-a"]),
        (5, "new", "pending", None, None, 0, []),
    ]
    for idx, prompt, state, reason, rid, attempts, ids in rows:
        inputs = {"prompt": prompt}
        key = job_key(MODEL, inputs, 0)
        conn.execute(
            V1_JOB, (idx, key, MODEL, json.dumps(inputs), state, reason, rid, attempts, 1.0)
        )
        for n, attempt_id in enumerate(ids, 1):
            conn.execute("INSERT INTO attempts VALUES (?,?,?,?)", (idx, n, attempt_id, 1.0))
    conn.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps({"concurrency": 2}),))
    conn.commit()
    conn.close()
    return path


def _current(store: StateStore) -> dict[int, tuple[JobState, str | None, list[str]]]:
    return {j.index: (j.state, j.request_id, j.request_ids) for j in store.jobs()}


EXPECTED = {
    1: (S.DONE, "r1", ["r1"]),
    2: (S.PENDING, None, ["r2"]),  # no current request: the next step is a submit
    3: (S.UNCERTAIN, None, ["r3"]),
    4: (S.QUEUED, "r4-b", ["r4-a", "r4-b"]),
    5: (S.PENDING, None, []),
}


def test_migrations_are_numbered_one_after_another():
    assert [m.version for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def test_a_version_1_file_reads_as_it_is(tmp_path):
    path = _v1_file(tmp_path)
    store = StateStore.open(tmp_path, readonly=True)
    try:
        # reads take ids from `attempts` alone: job 4's copy in the column waits for the migration
        assert _current(store) == {**EXPECTED, 4: (S.QUEUED, "r4-a", ["r4-a"])}
        failures = {f["index"]: f["request_id"] for f in store.summary()["failures"]}
        assert failures == {3: None}
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # left as it was


def test_a_version_1_file_is_migrated_when_opened_for_writing(tmp_path):
    path = _v1_file(tmp_path)
    StateStore.open(tmp_path).close()
    fresh = tmp_path / "fresh"
    StateStore.open(fresh, create=True).close()
    with sqlite3.connect(path) as old, sqlite3.connect(fresh / STATE_FILE) as new:
        for table in ("jobs", "attempts", "files", "retries", "meta"):
            info = f"PRAGMA table_info({table})"
            assert old.execute(info).fetchall() == new.execute(info).fetchall(), table
        indexes = "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' ORDER BY name"
        assert old.execute(indexes).fetchall() == new.execute(indexes).fetchall()
        assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store = StateStore.open(tmp_path)
    try:
        assert _current(store) == EXPECTED
        assert store.get_meta("settings") == {"concurrency": 2}
    finally:
        store.close()


def test_a_newer_file_is_refused_with_the_reason(tmp_path):
    StateStore.open(tmp_path, create=True).close()
    with sqlite3.connect(tmp_path / STATE_FILE) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for readonly in (False, True):
        with pytest.raises(StateError, match="newer than this batch_runner understands"):
            StateStore.open(tmp_path, readonly=readonly)


def test_an_old_run_directory_resumes_and_submits_its_pending_jobs_again(make_sim, tmp_path):
    """Job 2 of the version-1 file still had its failed attempt's id in `jobs.request_id`; it
    is submitted again (that release polled the old id and stopped on "pending → pending")."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    out = tmp_path / "run"
    _v1_file(out)
    res = run_cli("resume", out, "--json", "--no-progress", env=sim_env(sim))
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    summary = json.loads(res.stdout)
    # 1: files missing, its id unknown to this simulator; 3: uncertain, sent again; 4: unknown id
    assert summary["counts"] == {"done": 3, "failed": 2}, summary
    assert {f["index"] for f in summary["failures"]} == {1, 4}
    prompts = sorted(job["body"]["prompt"] for job in sim.jobs())
    assert prompts == ["lost", "new", "retry"]
    store = StateStore.open(out, readonly=True)
    try:
        assert store.jobs_at([2])[0].request_ids[0] == "r2"  # the first attempt is kept
        assert len(store.jobs_at([2])[0].request_ids) == 2
    finally:
        store.close()
