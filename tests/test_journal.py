"""The state file's writer: group commit (many events, few COMMITs) and durability order (an
event is committed, visible to another connection, before `durable()` resolves)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from batch_runner.errors import StateError
from batch_runner.jobs import JobSpec, JobState
from batch_runner.store import journal
from batch_runner.store.state import StateStore

S = JobState


def _store(tmp_path: Path, jobs: int) -> tuple[StateStore, list[str]]:
    """A run directory's store with `jobs` pending jobs; the list fills with every COMMIT."""
    store = StateStore.open(tmp_path, create=True)
    store.sync_jobs(JobSpec("m", {"prompt": f"job {i}"}) for i in range(jobs))
    commits: list[str] = []
    # called on whichever thread runs the statement (the writer thread for COMMIT)
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    return store, commits


def _committed(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """What another connection sees: only committed data."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


async def test_events_of_one_tick_are_one_commit(tmp_path):
    store, commits = _store(tmp_path, 500)
    try:
        for idx in range(1, 501):
            store.set_state(idx, S.SUBMITTING)
        await store.durable()
        assert len(commits) == 1
        assert _committed(store.path, "SELECT state, count(*) FROM jobs GROUP BY state") == [
            ("submitting", 500)
        ]
    finally:
        store.close()


async def test_events_written_during_a_commit_form_the_next_batch(tmp_path):
    store, commits = _store(tmp_path, 200)
    rounds = 10

    async def job(idx: int) -> None:
        for _ in range(rounds):
            store.count_retry("5xx")
            await asyncio.sleep(0)  # a tick: the journal starts (or is still in) a commit
        await store.durable()

    try:
        await asyncio.gather(*(job(idx) for idx in range(1, 201)))
        # 2,000 events in 10 ticks: at most one commit per tick, never one per event
        assert 1 <= len(commits) <= rounds
        assert _committed(store.path, "SELECT n FROM retries WHERE cause = '5xx'") == [(2000,)]
    finally:
        store.close()


async def test_a_request_id_is_committed_before_durable_resolves(tmp_path):
    store, _ = _store(tmp_path, 2)
    seen: dict[str, list[tuple]] = {}

    def look(name: str, idx: int):
        def callback(_: asyncio.Future) -> None:  # runs the moment the future resolves
            seen[name] = _committed(
                store.path, "SELECT request_id FROM attempts WHERE job_idx = ?", (idx,)
            )

        return callback

    try:
        store.mark_submitting(1, S.SUBMITTING, duplicate_risk=False)
        store.record_request_id(1, S.QUEUED, 1, "rid-first")
        first = store.durable()
        first.add_done_callback(look("first", 1))
        await asyncio.sleep(0)  # the first batch's COMMIT is now on the writer thread
        store.record_request_id(2, S.QUEUED, 1, "rid-second")  # the next batch
        second = store.durable()
        second.add_done_callback(look("second", 2))
        await asyncio.gather(first, second)
        assert seen == {"first": [("rid-first",)], "second": [("rid-second",)]}
        assert _committed(store.path, "SELECT idx, state FROM jobs ORDER BY idx") == [
            (1, "queued"),
            (2, "queued"),
        ]
    finally:
        store.close()


async def test_durable_with_nothing_written_resolves_at_once(tmp_path):
    store, commits = _store(tmp_path, 1)
    try:
        fut = store.durable()
        assert fut.done() and commits == []
    finally:
        store.close()


def test_outside_an_event_loop_each_event_commits_at_once(tmp_path):
    store, commits = _store(tmp_path, 1)
    try:
        store.set_state(1, S.CANCELLED, "by hand")
        assert len(commits) == 1
        rows = _committed(store.path, "SELECT state, reason FROM jobs")
        assert rows == [("cancelled", "by hand")]
    finally:
        store.close()


async def test_a_failed_commit_fails_the_waiters_and_later_writes(tmp_path):
    store, _ = _store(tmp_path, 1)
    try:
        store._write("UPDATE no_such_table SET x = 1", ())  # fails as a full disk would
        with pytest.raises(StateError):
            await store.durable()
        with pytest.raises(StateError):
            store.set_state(1, S.SUBMITTING)  # nothing is written after a failed commit
    finally:
        store.close()


async def test_a_lazy_event_waits_for_the_next_commit(tmp_path):
    store, commits = _store(tmp_path, 2)
    try:
        store.set_state(1, S.RUNNING, lazy=True)  # what a poll saw: no commit of its own
        for _ in range(5):
            await asyncio.sleep(0)
        assert commits == []
        store.record_request_id(2, S.QUEUED, 1, "rid")  # an urgent event: this tick's commit
        await store.durable()
        assert len(commits) == 1  # the lazy event went with it, in order
        assert _committed(store.path, "SELECT idx, state FROM jobs ORDER BY idx") == [
            (1, "running"),
            (2, "queued"),
        ]
    finally:
        store.close()


async def test_lazy_events_alone_are_committed_after_a_while_and_at_close(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "LAZY_SECONDS", 0.01)
    store, commits = _store(tmp_path, 2)
    try:
        store.set_state(1, S.RUNNING, lazy=True)
        store.record_cost(1, 1, 0.5)  # lazy too (no attempt row yet: updates nothing)
        while not commits:  # the LAZY_SECONDS timer started a commit
            await asyncio.sleep(0.01)
        await store.durable()  # nothing pending: waits for the commit in flight
        assert len(commits) == 1
        assert _committed(store.path, "SELECT state FROM jobs WHERE idx = 1") == [("running",)]
        store.set_state(2, S.RUNNING, lazy=True)
    finally:
        store.close()  # commits what is pending
    assert _committed(store.path, "SELECT state FROM jobs WHERE idx = 2") == [("running",)]


def _synchronous(store: StateStore) -> int:
    return store._db.execute("PRAGMA synchronous").fetchone()[0]  # 1 NORMAL, 2 FULL


async def test_a_deferred_store_syncs_every_commit_from_its_first_job_event(tmp_path):
    """A run's set-up (schema, jobs added, settings) commits without an fsync; the first job
    event's commit waits for the disk again, and that commit holds the set-up too."""
    store = StateStore.open(tmp_path, create=True, deferred=True)
    try:
        store.sync_jobs(JobSpec("m", {"prompt": f"job {i}"}) for i in range(3))
        store.set_meta({"settings": {"concurrency": 4}})
        assert _synchronous(store) == 1
        store.set_state(1, S.SUBMITTING)
        await store.durable()
        assert _synchronous(store) == 2
        assert _committed(store.path, "SELECT count(*) FROM jobs") == [(3,)]
    finally:
        store.close()
    plain = StateStore.open(tmp_path)  # every other open syncs every commit, as before
    try:
        assert _synchronous(plain) == 2
    finally:
        plain.close()
