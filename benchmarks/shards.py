"""Benchmark 7, shards: one manifest as N = 1, 2, 4 local processes (`--shard K/N`) against one
simulator whose capacity and rate limit they share, as a real account's are; then `merge` over
100,000 jobs in 8 shards.

Each shard gets 1/N of the total --concurrency and --rate (README "Many machines"), so the
figures compare the same account-wide budget split N ways: total throughput (jobs over the wall
time from the first process started to the last one finished) and API requests per job.

The merge part does not run 100,000 jobs: it synthesizes 8 shards' state files (every job
done, one file each, written straight into SQLite) and times `batch-runner merge` (wall, peak
RSS) reading them and writing metadata.jsonl and report.html; the image files themselves are
not created (merge never opens them).
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

from batch_runner.jobs import JobSpec
from batch_runner.shards import Shard, shard_of
from batch_runner.store.state import STATE_FILE, StateStore
from benchmarks import common as c

MODEL = "bytedance/seedream-5/lite/text-to-image"


def _params(quick: bool) -> dict:
    if quick:
        return {"jobs": 24, "latency": 0.1, "capacity": 8, "rate": 40, "conc": 8, "merge": 2000}
    return {"jobs": 240, "latency": 0.5, "capacity": 16, "rate": 40, "conc": 16, "merge": 100_000}


def run(quick: bool = False) -> dict:
    p = _params(quick)
    sim_args = (
        "--latency",
        str(p["latency"]),
        "--capacity",
        str(p["capacity"]),
        "--rate-limit",
        str(p["rate"]),
        "--image-scale",
        "0.01",
    )
    rows = []
    with c.workdir("shards") as tmp, c.simulator(*sim_args) as sim:
        manifest = c.write_manifest(tmp / "jobs.yaml", c.prompts(p["jobs"], "shards"))
        for n in (1, 2, 4):
            sim.reset()
            rows.append(_sharded_run(sim, manifest, tmp / f"n{n}", n, p))
    with c.workdir("merge") as tmp:
        merge = _merge_figures(tmp / "run", p["merge"], 8)
    return {"params": p, "rows": rows, "merge": merge}


def _sharded_run(sim: c.Simulator, manifest: Path, out: Path, n: int, p: dict) -> dict:
    conc, rate = max(1, p["conc"] // n), p["rate"] * 0.9 / n  # a little under the account's limit
    started = time.perf_counter()
    procs = [
        c.spawn(
            c.run_cmd(
                manifest,
                out,
                "--shard",
                f"{k}/{n}",
                "--concurrency",
                str(conc),
                "--rate",
                f"{rate:g}",
            ),
            env=c.env_for(sim.url),
        )
        for k in range(n)
    ]
    results = [proc.wait() for proc in procs]
    wall = time.perf_counter() - started
    for result in results:
        if result.code != 0:
            raise RuntimeError(f"shard exited {result.code}:\n{result.stderr[-2000:]}")
    stats = sim.stats()
    requests = stats["requests"]
    api = sum(v for k, v in requests.items() if k != "file")
    return {
        "n": n,
        "conc": conc,
        "rate": rate,
        "wall": wall,
        "throughput": p["jobs"] / wall,
        "per_job": api / p["jobs"],
        "submitted": stats["submitted"],
        "rss": max(r.rss_mb for r in results),
        "throttled": stats.get("faults", {}).get("rate_limited", 0),
    }


def synthesize(run_dir: Path | str, jobs: int, n: int) -> None:
    """`n` shard directories whose state files hold `jobs` done jobs with one file each."""
    run_dir = Path(run_dir)
    specs = [
        JobSpec(MODEL, {"prompt": text, "resolution": "2048x2048 (1:1)"})
        for text in c.prompts(jobs, "merge")
    ]
    for k in range(n):
        shard = Shard(k, n)
        folder = run_dir / shard.name
        store = StateStore.open(folder, create=True)
        store.sync_jobs(spec for spec in specs if shard_of(spec.key, n) == k)
        store.close()
        _finish_all(folder / STATE_FILE)


def _finish_all(path: Path) -> None:
    now = time.time()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT idx, inputs FROM jobs").fetchall()
        conn.execute("UPDATE jobs SET state = 'done', attempts = 1, updated_at = ?", (now,))
        conn.executemany(
            "INSERT INTO attempts(job_idx, n, request_id, submitted_at) VALUES (?, 1, ?, ?)",
            [(idx, f"req-{path.parent.name}-{idx}", now) for idx, _ in rows],
        )
        conn.executemany(
            "INSERT INTO files(job_idx, k, file_name, sha256, bytes) VALUES (?, 1, ?, ?, ?)",
            [(idx, f"images/{idx:05d}-job.png", "0" * 64, 123_456) for idx, _ in rows],
        )


def _merge_figures(run_dir: Path, jobs: int, n: int) -> dict:
    # in a child: the 100,000 specs would raise this process's peak RSS, which a child
    # started afterwards inherits as its own starting peak (Linux keeps it across fork)
    code = f"from benchmarks.shards import synthesize as s; s({str(run_dir)!r}, {jobs}, {n})"
    setup = c.timed([sys.executable, "-c", code]).wall
    first = c.timed([c.CLI, "merge", str(run_dir)])
    again = c.timed([c.CLI, "merge", str(run_dir)])
    status = c.timed([c.CLI, "status", str(run_dir), "--json"])
    lines = sum(1 for _ in (run_dir / "metadata.jsonl").open("rb"))
    return {
        "jobs": jobs,
        "shards": n,
        "setup": setup,
        "merge": first,
        "again": again,
        "status": status,
        "lines": lines,
        "metadata_mb": (run_dir / "metadata.jsonl").stat().st_size / 1e6,
        "report_mb": (run_dir / "report.html").stat().st_size / 1e6,
    }


def report(f: dict) -> str:
    p = f["params"]
    title = (
        f"7. Shards ({p['jobs']} jobs, latency {p['latency']:g} s, one simulator: capacity "
        f"{p['capacity']}, rate limit {p['rate']} req/s; each shard 1/N of --concurrency "
        f"{p['conc']} and of --rate)"
    )
    rows = [
        [
            r["n"],
            r["conc"],
            f"{r['rate']:.1f}",
            r["wall"],
            r["throughput"],
            r["per_job"],
            r["throttled"],
            r["rss"],
        ]
        for r in f["rows"]
    ]
    header = [
        "N",
        "conc/shard",
        "rate/shard",
        "wall s",
        "jobs/s",
        "requests/job",
        "429s",
        "peak RSS MB",
    ]
    text = c.table(title, header, rows)
    m = f["merge"]
    merge_rows = [
        ["merge", m["merge"].wall, m["merge"].rss_mb],
        ["merge again (idempotent)", m["again"].wall, m["again"].rss_mb],
        ["status over the shards", m["status"].wall, m["status"].rss_mb],
    ]
    text += "\n" + c.table(
        f"7b. merge over {m['jobs']:,} jobs in {m['shards']} shards (state files synthesized "
        f"in {m['setup']:.0f} s; no image files)",
        ["command", "wall s", "peak RSS MB"],
        merge_rows,
    )
    text += (
        f"\nmetadata.jsonl: {m['lines']:,} lines, {m['metadata_mb']:.1f} MB; "
        f"report.html {m['report_mb']:.1f} MB\n"
    )
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
