"""`eta_s` (issue 29): from what the state file has learned (submit to done of the jobs done),
the jobs waiting and in flight; null until something is learned, 0 once nothing is left.
Its honesty on a real run is benchmark 10 (benchmarks/eta.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import run_cli, sim_env, write_manifest

from batch_runner.jobs import JobSpec
from batch_runner.store.eta import eta_seconds
from batch_runner.store.state import STATE_FILE, StateStore

MODEL = "bytedance/seedream-5/lite/text-to-image"
NOW = 10_000.0


def _state(
    tmp_path: Path, states: list[tuple[str, float | None, float | None]]
) -> sqlite3.Connection:
    """Jobs given as (state, submitted_at, updated_at), concurrency 4."""
    store = StateStore.open(tmp_path, create=True)
    store.sync_jobs([JobSpec(MODEL, {"prompt": f"p{i}"}) for i in range(len(states))])
    store.set_meta({"settings": {"concurrency": 4}})
    store.close()
    conn = sqlite3.connect(tmp_path / STATE_FILE, isolation_level=None)
    for idx, (state, submitted, updated) in enumerate(states, 1):
        attempts = 1 if submitted is not None else 0
        conn.execute(
            "UPDATE jobs SET state = ?, attempts = ?, updated_at = ? WHERE idx = ?",
            (state, attempts, updated, idx),
        )
        if submitted is not None:
            conn.execute(
                "INSERT INTO attempts VALUES (?, 1, ?, ?, NULL, NULL)", (idx, f"r{idx}", submitted)
            )
    return conn


def test_nothing_learned_is_null_nothing_left_is_zero(tmp_path: Path):
    conn = _state(tmp_path / "a", [("running", NOW - 5, NOW - 5), ("pending", None, 1.0)])
    assert eta_seconds(conn, NOW) is None
    conn = _state(tmp_path / "b", [("done", NOW - 20, NOW - 10), ("failed", NOW - 5, NOW)])
    assert eta_seconds(conn, NOW) == 0.0


def test_waiting_jobs_drain_through_the_jobs_in_flight(tmp_path: Path):
    done = [("done", NOW - 100 - 10 * i, NOW - 90 - 10 * i) for i in range(10)]  # each 10 s
    flying = [("running", NOW - 2, NOW - 2)] * 4
    waiting = [("pending", None, 1.0)] * 8
    conn = _state(tmp_path, done + flying + waiting)
    # 8 waiting through 4 slots at 10 s each: 20 s until the last starts, 10 s more
    assert eta_seconds(conn, NOW) == 30.0
    conn.execute("UPDATE jobs SET reason = 'budget' WHERE state = 'pending'")
    assert eta_seconds(conn, NOW) == 8.0  # no run sends those: the youngest in flight is left


def test_status_json_has_eta_s(sim, tmp_path: Path):
    out = tmp_path / "run"
    manifest = write_manifest(tmp_path / "m.yaml", ["a fox", "an owl"])
    res = run_cli("run", manifest, "--out", out, "--json", "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["eta_s"] == 0.0
    assert json.loads(run_cli("status", out, "--json").stdout)["eta_s"] == 0.0
