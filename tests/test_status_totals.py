"""`status` adds up a run's jobs in SQL over the indexes of migration 8 (store/costs.py
job_groups): the same answer as a walk over every job, on a state file from before the
migration (read as it is) and after it (migrated when opened for writing)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from conftest import run_cli, sim_env, status_json, write_manifest

from batch_runner.jobs import NOT_POLLED
from batch_runner.money import usd
from batch_runner.store.costs import BUDGET_REASON, CLOSED
from batch_runner.store.state import STATE_FILE, StateStore

MODEL = "bytedance/seedream-5/lite/text-to-image"
OTHER = "black-forest-labs/flux-1-kontext/pro/edit"
TOTALS_VERSION = 8


def _run(make_sim: Any, tmp_path: Path) -> Path:
    """A small real run: jobs done, and jobs left pending by --max-cost."""
    sim = make_sim("--image-scale", "0.01")
    out = tmp_path / "run"
    manifest = write_manifest(tmp_path / "m.yaml", [f"a fox #{i}" for i in range(20)])
    args = ("--out", out, "--concurrency", "4", "--max-cost", "0.25", "--json", "--no-progress")
    res = run_cli("run", manifest, *args, env=sim_env(sim))
    assert res.returncode == 1 and "left pending by --max-cost" in res.stderr, res.stderr
    return out


def _vary(db: Path) -> None:
    """States this run did not reach, so every sum has rows: queued (not polled yet) and
    running jobs with their charge to come, a done job without a recorded cost, failed jobs
    without an estimate, lost submits (possible duplicates), another model, jobs no longer
    in the manifest."""
    conn = sqlite3.connect(db)
    done = [i for (i,) in conn.execute("SELECT idx FROM jobs WHERE state = 'done' ORDER BY idx")]
    assert len(done) >= 8, done
    for idx, state, reason in [(done[0], "queued", NOT_POLLED), (done[1], "running", None)]:
        conn.execute("UPDATE jobs SET state = ?, reason = ? WHERE idx = ?", (state, reason, idx))
        conn.execute(
            "UPDATE attempts SET cost_usd = NULL WHERE job_idx = ? AND n = "
            "(SELECT attempts FROM jobs WHERE idx = ?)",
            (idx, idx),
        )
    conn.execute("UPDATE attempts SET cost_usd = NULL WHERE job_idx = ?", (done[3],))
    conn.execute("UPDATE jobs SET model = ? WHERE idx % 3 = 0", (OTHER,))
    conn.execute("UPDATE jobs SET in_manifest = 0 WHERE idx IN (?, ?)", (done[4], done[5]))
    conn.execute(
        "UPDATE jobs SET state = 'failed', reason = 'boom', estimate_usd = NULL WHERE idx = ?",
        (done[6],),
    )
    conn.execute(
        "UPDATE jobs SET state = 'uncertain', possible_duplicates = 1 WHERE idx = ?", (done[7],)
    )
    conn.execute(
        "UPDATE jobs SET possible_duplicates = 2 WHERE idx = "
        "(SELECT max(idx) FROM jobs WHERE state = 'pending')"
    )
    conn.commit()
    conn.close()


def _as_version_7(db: Path) -> None:
    """The file as release 7 left it: its one index on state, no jobs_totals."""
    conn = sqlite3.connect(db)
    conn.executescript(
        "DROP INDEX jobs_totals; DROP INDEX jobs_state; CREATE INDEX jobs_state ON jobs(state);"
        "PRAGMA user_version = 7;"
    )
    conn.close()


def _walked(run_dir: Path) -> dict[str, Any]:
    """The figures as the summary computed them before migration 8: a walk over every job."""
    store = StateStore.open(run_dir, readonly=True)
    try:
        counts: dict[str, int] = {}
        models: dict[str, dict[str, int]] = {}
        spent = ahead = extra = left_usd = 0.0
        unknown_ahead = unknown_extra = unknown_left = False
        left = 0
        for job in store.money_jobs():
            counts[job.state] = counts.get(job.state, 0) + 1
            row = models.setdefault(job.model, {"jobs": 0, "done": 0})
            row["jobs"] += 1
            row["done"] += job.state == "done"
            known = [c for c in job.costs if c is not None]
            spent += sum(known)
            if job.duplicates:
                unknown_extra |= job.estimate is None
                extra += job.duplicates * (job.estimate or 0.0)
            if job.state not in CLOSED and (job.state != "done" or (job.costs and not known)):
                unknown_ahead |= job.estimate is None
                ahead += job.estimate or 0.0
            if job.state == "pending" and job.reason == BUDGET_REASON:
                left += 1
                left_usd += job.estimate or 0.0
                unknown_left |= job.estimate is None
        jobs = {j.index: j for j in store.jobs()}
    finally:
        store.close()
    cost = {
        "spent_usd": usd(spent),
        "estimated_usd": None if unknown_ahead else usd(spent + ahead),
        "possible_extra_usd": None if unknown_extra else usd(extra),
    }
    if left:
        cost["left_by_budget"] = {"jobs": left, "estimated_usd": usd(left_usd)}
    return {
        "counts": dict(sorted(counts.items())),
        "cost": cost,
        "models": dict(sorted(models.items())),
        "possible_duplicates": sum(j.duplicates for j in jobs.values()),
        "not_in_manifest": sum(not j.in_manifest for j in jobs.values()),
        "not_polled": sum(j.state == "queued" and j.reason == NOT_POLLED for j in jobs.values()),
    }


def test_status_adds_up_as_a_walk_over_the_jobs_before_and_after_the_migration(make_sim, tmp_path):
    out = _run(make_sim, tmp_path)
    db = out / STATE_FILE
    _vary(db)
    _as_version_7(db)
    walked = _walked(out)
    assert walked["cost"]["estimated_usd"] is not None and "left_by_budget" in walked["cost"]
    assert walked["not_polled"] and walked["not_in_manifest"] and walked["possible_duplicates"]
    before = status_json(out)  # read-only: the file stays at version 7, without the indexes
    assert {k: before[k] for k in walked} == walked
    StateStore.open(out).close()  # opened for writing: migration 8
    after = status_json(out)
    # eta_s counts down from the youngest submit: the clock moved between the two
    assert {**after, "eta_s": None} == {**before, "eta_s": None}
    store = StateStore.open(out, readonly=True)
    statements: list[str] = []
    try:
        assert store.version >= TOTALS_VERSION  # migrated (and any later migration)
        store._db.set_trace_callback(statements.append)
        store.summary()
        store._db.set_trace_callback(None)
        plans = {sql: _plan(store._db, sql) for sql in statements if " jobs" in sql}
    finally:
        store.close()
    # the sums over every job read an index only, never the rows
    grouped = [p for sql, p in plans.items() if "GROUP BY state, model" in sql]
    assert grouped == ["SCAN jobs USING COVERING INDEX jobs_totals"], plans
    assert not [p for p in plans.values() if "SCAN jobs" in p and "COVERING INDEX" not in p], plans


def _plan(conn: sqlite3.Connection, sql: str) -> str:
    """The query plan of a traced statement (its parameters are inlined by the trace)."""
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
