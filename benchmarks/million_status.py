"""Benchmark 13, `status` on the state of a million jobs (issue 30 item 4): a real run of a
small manifest against the simulator (failures, lost submits, a `--max-cost` that leaves jobs
pending) is copied until the state holds N jobs, with some copies moved to other states so
every branch of the summary counts (queued not polled yet, running with its charge to come,
done without a cost, another model, not in the manifest). Each checkout then opens a copy for
writing (its migrations: timed) and prints `status --json` (timed, REPEATS times); the
answers must be equal.

    python -m benchmarks.million_status [--jobs 1000000] [--tree NAME=PATH ...]

A real 1M-job run takes ~15 minutes here (`python -m benchmarks.million --full`); the copies
are the same rows at the same scale, built in a minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path

from benchmarks import common as c
from benchmarks.million import _cli, _env, write_txt

SEED_JOBS = 2000
REPEATS = 3
OTHER_MODEL = "black-forest-labs/flux-1-kontext/pro/edit"
NOT_POLLED = "submitted; not polled yet"  # batch_runner.jobs.NOT_POLLED (no import: any tree)


def seed_run(tree: Path, tmp: Path) -> Path:
    """A real run of SEED_JOBS prompts: done, failed, uncertain, pending by budget."""
    manifest = write_txt(tmp / "seed.txt", SEED_JOBS)
    out = tmp / "seed"
    sim_args = ("--image-scale", "0.01", "--fail-rate", "0.05", "--lost-submit-rate", "0.01")
    with c.simulator(*sim_args, "--seed", "3") as sim:
        cmd = _cli("run", str(manifest), "--out", str(out), "--no-progress", "--json")
        cmd += ["--concurrency", "64", "--max-cost", "30"]
        c.timed(cmd, env=_env(tree, sim), check=False)  # exit 1: it has failures
    return out / "state.db"


def inflate(seed: Path, dest: Path, jobs: int) -> None:
    """`dest`: the seed's rows copied until it holds `jobs` jobs (fresh indexes and keys)."""
    shutil.copyfile(seed, dest)
    conn = sqlite3.connect(dest, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("ATTACH ? AS s", (str(seed),))
    cols = {t: [r[1] for r in conn.execute(f"PRAGMA s.table_info({t})")] for t in ("jobs",)}
    job_cols = ", ".join(cols["jobs"])
    picked = ", ".join(
        {"idx": "idx + :off", "key": "key || '-' || :k"}.get(col, col) for col in cols["jobs"]
    )
    conn.execute("BEGIN")
    for k in range(1, jobs // SEED_JOBS):
        p = {"off": k * SEED_JOBS, "k": k}
        conn.execute(f"INSERT INTO jobs ({job_cols}) SELECT {picked} FROM s.jobs", p)
        conn.execute(
            "INSERT INTO attempts SELECT job_idx + :off, n, request_id || '-' || :k, "
            "submitted_at, cost_usd, model_id FROM s.attempts",
            p,
        )
        conn.execute(
            "INSERT INTO files SELECT job_idx + :off, k, file_name, sha256, bytes, url "
            "FROM s.files",
            p,
        )
        _vary(conn, k)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _vary(conn: sqlite3.Connection, k: int) -> None:
    """Copy k's done jobs moved elsewhere, by k: every branch of the summary has rows."""
    lo, hi = k * SEED_JOBS, (k + 1) * SEED_JOBS
    done = "state = 'done' AND idx >= ? AND idx < ?"
    last = "job_idx >= ? AND job_idx < ? AND n = (SELECT attempts FROM jobs WHERE idx = job_idx)"
    kind = k % 50
    if kind in (1, 2):  # at the API: the last attempt's charge still to come
        state, reason = ("queued", NOT_POLLED) if kind == 1 else ("running", None)
        conn.execute(f"UPDATE attempts SET cost_usd = NULL WHERE {last}", (lo, hi))
        conn.execute(f"UPDATE jobs SET state = ?, reason = ? WHERE {done}", (state, reason, lo, hi))
    elif kind == 3:  # done, its cost never recorded
        conn.execute(
            "UPDATE attempts SET cost_usd = NULL WHERE job_idx >= ? AND job_idx < ?", (lo, hi)
        )
    elif kind == 4:
        conn.execute("UPDATE jobs SET in_manifest = 0 WHERE idx >= ? AND idx < ?", (lo, hi))
    elif kind == 5:  # failed jobs without an estimate count for nothing ahead
        conn.execute(
            "UPDATE jobs SET estimate_usd = NULL WHERE state = 'failed' AND idx >= ? AND idx < ?",
            (lo, hi),
        )
    if k % 7 == 0:
        conn.execute("UPDATE jobs SET model = ? WHERE idx >= ? AND idx < ?", (OTHER_MODEL, lo, hi))


def measure(tree: Path, state: Path, tmp: Path, name: str) -> dict:
    """`status` of the copy as it is (read-only: no migration), then opened for writing (the
    tree's migrations), then `status` REPEATS times."""
    run_dir = tmp / f"run-{name}"
    run_dir.mkdir()
    shutil.copyfile(state, run_dir / "state.db")
    cmd = _cli("status", str(run_dir), "--json")
    as_it_was = c.timed(cmd, env=_env(tree))
    code = "import sys; from pathlib import Path; from batch_runner.store.state import StateStore"
    code += "; StateStore.open(Path(sys.argv[1])).close()"
    opened = c.timed([sys.executable, "-P", "-c", code, str(run_dir)], env=_env(tree))
    status = [c.timed(cmd, env=_env(tree)) for _ in range(REPEATS)]
    best = min(status, key=lambda t: t.wall)
    with sqlite3.connect(run_dir / "state.db") as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return {
        "tree": name,
        "version": version,
        "before_s": as_it_was.wall,
        "open_s": opened.wall,
        "status_s": best.wall,
        "status_all_s": [round(t.wall, 2) for t in status],
        "status_mb": best.rss_mb,
        "state_mb": (run_dir / "state.db").stat().st_size / 1e6,
        "answer": best.json(),
        "same_before": as_it_was.json() == best.json(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--tree", action="append", metavar="NAME=PATH")
    p.add_argument("--keep", metavar="DIR", help="keep the inflated state here")
    args = p.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {"this": str(c.ROOT)}
    with c.workdir("million-status") as tmp:
        state = tmp / "state.db"
        inflate(seed_run(Path(next(iter(trees.values()))), tmp), state, args.jobs)
        if args.keep:
            shutil.copyfile(state, args.keep)
        rows = [measure(Path(path), state, tmp, name) for name, path in trees.items()]
    print(
        "| jobs | code | status before migrating s | migrating s | schema | status s | "
        "peak MB | state MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {args.jobs:,} | {r['tree']} | {r['before_s']:.2f} | {r['open_s']:.1f} | "
            f"{r['version']} | {r['status_s']:.2f} {r['status_all_s']} | {r['status_mb']:.0f} | "
            f"{r['state_mb']:.0f} |"
        )
    same = all(r["answer"] == rows[0]["answer"] and r["same_before"] for r in rows)
    print(f"same `status --json` from every tree: {same}")
    answer = dict(rows[0]["answer"], failures=f"{len(rows[0]['answer']['failures'])} rows")
    print(json.dumps(answer, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
