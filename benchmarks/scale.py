"""Benchmark 4, scale: a generated 100,000-job manifest, then a 20,000-job run.

- `validate` of the 100,000 jobs: wall time and peak RSS.
- first `run` set-up (expand, validate, insert 100,000 jobs into the state): the time until
  the simulator sees the first submit. (`run --max-jobs 0` cannot measure this: the job count
  is checked against --max-jobs while expanding, before the state is touched.) The run is then
  stopped with one SIGINT, which finishes the jobs in flight and exits 130.
- `status` on that state, and `resume` start-up: the time until the first API request.
- a 20,000-job run on the zero-latency simulator (concurrency 64): jobs/s and peak RSS,
  compared with a 2,000-job run measured here the same way.
Targets: validate < 10 s, resume start < 3 s, peak RSS < 300 MB, jobs/s within 20%.
"""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path

from benchmarks import common as c

SIM_ARGS = ("--image-scale", "0.01")


def _params(quick: bool) -> tuple[int, int, int, int]:
    """(big manifest, big run, reference run, repeats)"""
    return (2000, 400, 200, 1) if quick else (100_000, 20_000, 2000, c.REPEATS)


def _until_first_request(
    sim: c.Simulator, cmd: list[str], kinds: tuple[str, ...] = ()
) -> tuple[float, c.Timed]:
    """Start `cmd`, time it to the simulator's first API request (of `kinds`, else any but
    the model catalogue, which a run asks before it sets up its state), then stop it with
    SIGINT."""
    sim.reset()
    child = c.spawn(cmd, env=c.env_for(sim.url))
    first = None
    while child.proc.poll() is None:
        seen = sim.stats()["requests"]
        if sum(n for kind, n in seen.items() if kind in kinds or not kinds and kind != "catalog"):
            first = time.perf_counter() - child.started
            break
        time.sleep(0.01)
    child.signal(signal.SIGINT)
    done = child.wait()
    if first is None:
        raise RuntimeError(f"{cmd[1]} ended before any request: {done.stderr[-1500:]}")
    return first, done


def _startups(sim: c.Simulator, tmp: Path, manifest: Path, repeats: int) -> dict:
    setup, resume, status, validate = [], [], [], []
    for i in range(repeats):
        validate.append(c.timed([c.CLI, "validate", str(manifest)]))
        out = tmp / f"state{i}"
        cmd = c.run_cmd(manifest, out, "--concurrency", "64")
        setup.append(_until_first_request(sim, cmd, ("submit",)))
        status.append(c.timed([c.CLI, "status", str(out), "--json"]))
        cmd = [c.CLI, "resume", str(out), "--no-progress", "--json"]
        resume.append(_until_first_request(sim, cmd))
    return {
        "validate": (c.median_of(validate, lambda r: r.wall), max(r.rss_mb for r in validate)),
        "setup": (statistics.median(s[0] for s in setup), max(s[1].rss_mb for s in setup)),
        "status": (c.median_of(status, lambda r: r.wall), max(r.rss_mb for r in status)),
        "resume": (statistics.median(s[0] for s in resume), max(s[1].rss_mb for s in resume)),
    }


def _throughput(sim: c.Simulator, tmp: Path, jobs: int, repeats: int) -> tuple[float, float]:
    """(jobs/s, peak RSS MB) of a fresh `jobs`-job run, median over `repeats`."""
    manifest = c.write_manifest(tmp / f"run{jobs}.yaml", c.prompts(jobs, f"r{jobs}"))
    runs = []
    for i in range(repeats):
        sim.reset()
        out = tmp / f"run{jobs}-{i}"
        runs.append(
            c.timed(c.run_cmd(manifest, out, "--concurrency", "64"), env=c.env_for(sim.url))
        )
    return jobs / c.median_of(runs, lambda r: r.wall), max(r.rss_mb for r in runs)


def run(quick: bool = False) -> dict:
    big, run_jobs, ref_jobs, repeats = _params(quick)
    with c.workdir("scale") as tmp, c.simulator(*SIM_ARGS) as sim:
        started = time.perf_counter()
        manifest = c.write_manifest(tmp / "big.yaml", c.prompts(big, "big"))
        figures: dict = {"jobs": big, "generate": time.perf_counter() - started}
        figures.update(_startups(sim, tmp, manifest, repeats))
        # one run each: a 20,000-job run takes a while, and its rate is itself an average
        figures["run_jobs"], figures["ref_jobs"] = run_jobs, ref_jobs
        figures["run"] = _throughput(sim, tmp, run_jobs, 1)
        figures["ref"] = _throughput(sim, tmp, ref_jobs, repeats)
    return figures


def report(f: dict) -> str:
    n = f"{f['jobs']:,}"
    rows = [
        [f"validate ({n} jobs)", f["validate"][0], "", f["validate"][1], "< 10 s"],
        [f"first run: set-up to first submit ({n})", f["setup"][0], "", f["setup"][1], ""],
        [f"status --json ({n})", f["status"][0], "", f["status"][1], ""],
        [f"resume: start to first request ({n})", f["resume"][0], "", f["resume"][1], "< 3 s"],
        [f"run {f['ref_jobs']:,} jobs", "", f["ref"][0], f["ref"][1], ""],
        [f"run {f['run_jobs']:,} jobs", "", f["run"][0], f["run"][1], "within 20%"],
    ]
    text = c.table(
        "4. Scale (zero-latency simulator, concurrency 64)",
        ["what", "seconds", "jobs/s", "peak RSS MB", "target"],
        rows,
    )
    peak = max(f[k][1] for k in ("validate", "setup", "status", "resume", "run", "ref"))
    drop = f["run"][0] / f["ref"][0]
    checks = {
        "validate < 10 s": f["validate"][0] < 10,
        "resume start < 3 s": f["resume"][0] < 3,
        f"peak RSS < 300 MB ({peak:.0f})": peak < 300,
        f"jobs/s within 20% ({drop:.2f}x)": drop >= 0.8,
    }
    text += "\n" + "; ".join(f"{k}: {c.verdict(v)}" for k, v in checks.items()) + "\n"
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
