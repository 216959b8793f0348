"""Benchmark 13, manifests of a million jobs (issue 30 item 4): wall time and peak RSS of
`validate --offline` and of `run --shard 0/1000` (time to its first submit, and to its end)
over 10k / 100k / 1M-line `.txt` manifests, for one or more checkouts side by side.

    python -m benchmarks.million [--sizes 10000,100000,1000000] [--tree NAME=PATH ...]

Each command runs as its own child process (`python -m batch_runner` with PYTHONPATH set to
the checkout), so the landed code and a branch are measured in the same invocation; peak RSS
comes from `os.wait4`. The run talks to one zero-latency simulator subprocess (tiny images);
"first submit" is when the simulator first counts a submit (polled every 10 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import common as c

SHARD = "0/1000"


def write_txt(path: Path, n: int) -> Path:
    """`n` distinct one-line prompts."""
    subjects = ("a red fox", "an owl", "a lighthouse", "a paper boat", "a bowl of ramen")
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(f"{subjects[i % 5]} #{i:07d}, soft light\n")
    return path


def _env(tree: Path, sim: c.Simulator | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    if sim is not None:
        env |= {"RUNCOMFY_API_TOKEN": c.TOKEN, "RUNCOMFY_API_BASE": sim.url}
    return env


def _cli(*args: str) -> list[str]:
    # -P: children run in this checkout (common.spawn's cwd), which must not shadow PYTHONPATH
    return [sys.executable, "-P", "-m", "batch_runner", *args]


def validate(tree: Path, manifest: Path, n: int) -> dict:
    cmd = _cli("validate", str(manifest), "--offline", "--max-jobs", str(2 * n), "--json")
    t = c.timed(cmd, env=_env(tree))
    jobs = t.json()["jobs"]
    return {"wall": t.wall, "rss_mb": t.rss_mb, "jobs": jobs}


def shard_run(tree: Path, manifest: Path, n: int, out: Path, sim: c.Simulator) -> dict:
    sim.reset()
    cmd = _cli(
        "run",
        str(manifest),
        "--out",
        str(out),
        "--shard",
        SHARD,
        "--max-jobs",
        str(2 * n),
        "--no-progress",
        "--concurrency",
        "32",
        "--json",
    )
    child = c.spawn(cmd, env=_env(tree, sim))
    first = None
    while child.proc.poll() is None and first is None:
        if sim.stats().get("submitted", 0) > 0:
            first = time.perf_counter() - child.started
        else:
            time.sleep(0.01)
    t = child.wait()
    if t.code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {t.code}:\n{t.stderr[-2000:]}")
    summary = t.json()
    return {"first_submit": first, "wall": t.wall, "rss_mb": t.rss_mb, "jobs": summary["jobs"]}


def full_run(tree: Path, manifest: Path, n: int, out: Path, sim: c.Simulator) -> dict:
    """A whole run of the manifest on one machine, then `status` on its state file."""
    sim.reset()
    cmd = _cli(
        "run",
        str(manifest),
        "--out",
        str(out),
        "--max-jobs",
        str(2 * n),
        "--no-progress",
        "--concurrency",
        "64",
        "--json",
    )
    t = c.timed(cmd, env=_env(tree, sim))
    status = c.timed(_cli("status", str(out), "--json"), env=_env(tree))
    done = status.json()["counts"].get("done", 0) if status.json() else None
    state = (out / "state.db").stat().st_size
    return {
        "wall": t.wall,
        "rss_mb": t.rss_mb,
        "done": done,
        "status_s": status.wall,
        "state_bytes_per_job": state / n,
    }


def run_full(sizes: list[int], trees: dict[str, Path]) -> list[dict]:
    rows = []
    with c.workdir("million-full") as tmp, c.simulator("--image-scale", "0.01") as sim:
        for n in sizes:
            manifest = write_txt(tmp / f"m{n}.txt", n)
            for name, tree in trees.items():
                row = {"lines": n, "tree": name, **full_run(tree, manifest, n, tmp / name, sim)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def run(sizes: list[int], trees: dict[str, Path]) -> list[dict]:
    rows = []
    with c.workdir("million") as tmp, c.simulator("--image-scale", "0.01") as sim:
        for n in sizes:
            manifest = write_txt(tmp / f"m{n}.txt", n)
            for name, tree in trees.items():
                row = {"lines": n, "tree": name, "validate": validate(tree, manifest, n)}
                row["shard"] = shard_run(tree, manifest, n, tmp / f"run-{name}-{n}", sim)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict]) -> str:
    out = [
        f"| lines | code | validate s | validate MB | run --shard {SHARD}: jobs | "
        "first submit s | end s | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v, s = r["validate"], r["shard"]
        first = f"{s['first_submit']:.1f}" if s["first_submit"] is not None else "-"
        out.append(
            f"| {r['lines']:,} | {r['tree']} | {v['wall']:.1f} | {v['rss_mb']:.0f} | "
            f"{s['jobs']:,} | {first} | {s['wall']:.1f} | {s['rss_mb']:.0f} |"
        )
    return "\n".join(out)


def report_full(rows: list[dict]) -> str:
    out = [
        "| jobs | code | run s | peak MB | done | status s | state bytes/job |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['lines']:,} | {r['tree']} | {r['wall']:.0f} | {r['rss_mb']:.0f} | "
            f"{r['done']:,} | {r['status_s']:.2f} | {r['state_bytes_per_job']:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--full", action="store_true", help="whole runs (no shard) and `status`")
    p.add_argument(
        "--tree",
        action="append",
        metavar="NAME=PATH",
        help="a checkout to measure (default: this one, as 'this')",
    )
    args = p.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {"this": str(c.ROOT)}
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = {k: Path(v) for k, v in trees.items()}
    print(report_full(run_full(sizes, paths)) if args.full else report(run(sizes, paths)))


if __name__ == "__main__":
    main()
