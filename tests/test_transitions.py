"""One place changes a job's state: `JobRecord.move` (or the store's `move_all`) checks every
move against jobs.TRANSITIONS; the store records the state it is told; a job's current
request_id has one source, its last attempt."""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest

import batch_runner
from batch_runner.jobs import (
    TRANSITIONS,
    WITHOUT_REQUEST,
    JobRecord,
    JobSpec,
    JobState,
    TransitionError,
    check_move,
)
from batch_runner.store.state import StateStore

S = JobState
PACKAGE = Path(batch_runner.__file__).parent


def _record(state: JobState, ids: list[str] | None = None) -> JobRecord:
    return JobRecord(
        key="k", index=7, model="m", inputs={}, state=state, request_ids=list(ids or [])
    )


@pytest.mark.parametrize("old", list(S))
def test_every_move_is_checked_against_the_table(old):
    for new in S:
        job = _record(old)
        if new in TRANSITIONS[old]:
            job.move(new, "why")
            assert (job.state, job.reason) == (new, "why")
        else:
            with pytest.raises(TransitionError, match=f"job 7: {old} → {new}"):
                job.move(new, "why")
            assert (job.state, job.reason) == (old, None)  # nothing changed


def test_check_move_names_who_moved():
    assert check_move(S.PENDING, S.SUBMITTING) is S.SUBMITTING
    with pytest.raises(TransitionError, match="^a job: cancelled → pending"):
        check_move(S.CANCELLED, S.PENDING)


@pytest.mark.parametrize("state", list(S))
def test_the_current_request_id_is_the_last_attempt_unless_a_submit_is_next(state):
    job = _record(state, ["first", "second"])
    assert job.request_id == (None if state in WITHOUT_REQUEST else "second")
    assert _record(state).request_id is None  # never submitted


def test_a_failed_generation_sent_back_to_pending_has_no_current_request():
    job = _record(S.RUNNING, ["r1"])
    job.move(S.PENDING, "attempt 1 failed: boom")
    assert job.request_id is None and job.request_ids == ["r1"]


def _store(tmp_path: Path, n: int) -> StateStore:
    store = StateStore.open(tmp_path, create=True)
    store.sync_jobs(JobSpec("m", {"prompt": f"p{i}"}) for i in range(n))
    return store


def test_the_store_records_the_state_it_is_told(tmp_path):
    store = _store(tmp_path, 1)
    try:
        # the events do not decide the state: whatever the caller moved to is written
        store.mark_submitting(1, S.SUBMITTING, duplicate_risk=True)
        assert store.jobs()[0].state is S.SUBMITTING
        store.record_request_id(1, S.RUNNING, 1, "r1")
        job = store.jobs()[0]
        assert (job.state, job.request_id, job.attempts) == (S.RUNNING, "r1", 1)
        store.record_outputs(1, S.DOWNLOADING, ["http://x/1.png"])
        assert store.jobs()[0].state is S.DOWNLOADING
        store.set_state(1, S.PENDING, "attempt 1 failed")
        job = store.jobs()[0]
        assert (job.state, job.reason, job.request_id, job.request_ids) == (
            S.PENDING,
            "attempt 1 failed",
            None,
            ["r1"],
        )
        assert store.summary()["possible_duplicates"] == 1
    finally:
        store.close()


def test_move_all_checks_before_it_writes(tmp_path):
    store = _store(tmp_path, 3)
    try:
        store.mark_submitting(1, S.SUBMITTING, duplicate_risk=False)
        store.mark_submitting(2, S.SUBMITTING, duplicate_risk=False)
        assert store.move_all(S.SUBMITTING, S.UNCERTAIN, "crashed") == 2
        with pytest.raises(TransitionError):
            store.move_all(S.PENDING, S.QUEUED, "no")
        assert [j.state for j in store.jobs()] == [S.UNCERTAIN, S.UNCERTAIN, S.PENDING]
    finally:
        store.close()


def test_summary_failures_carry_the_current_request_id(tmp_path):
    store = _store(tmp_path, 3)
    try:
        for idx in (1, 2):
            store.mark_submitting(idx, S.SUBMITTING, duplicate_risk=False)
            store.record_request_id(idx, S.QUEUED, 1, f"r{idx}")
        store.set_state(1, S.FAILED, "generation failed")
        store.mark_submitting(2, S.SUBMITTING, duplicate_risk=False)
        store.set_state(2, S.UNCERTAIN, "submit answer lost")  # attempt 2's answer is lost
        store.set_state(3, S.FAILED, "submit refused")
        failures = {f["index"]: f["request_id"] for f in store.summary()["failures"]}
        assert failures == {1: "r1", 2: None, 3: None}
    finally:
        store.close()


# ---- guards: the rules above cannot be bypassed quietly -------------------------------------


def _sources() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "simulator" not in p.parts]


def test_only_jobs_py_assigns_a_state():
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "state":
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == ["jobs.py:" + str(_line_of_move())]


def _line_of_move() -> int:
    text = (PACKAGE / "jobs.py").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(text, 1) if "self.state = check_move(" in line)


def test_no_state_name_is_written_into_sql():
    names = "|".join(s.value for s in S)
    quoted = re.compile(rf"'({names})'")
    for path in _sources():
        if path.parent.name in ("store", "run"):
            assert not quoted.search(path.read_text(encoding="utf-8")), path


def test_the_jobs_table_has_no_second_copy_of_the_request_id(tmp_path):
    _store(tmp_path, 1).close()
    with sqlite3.connect(tmp_path / "state.db") as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
    assert "request_id" not in columns and "attempts" in columns
