"""Benchmark 1, overhead: batch_runner vs the floor (benchmarks/floor.py) vs curl + xargs.

2,000 jobs on a zero-latency simulator with tiny images (`--image-scale 0.01`), concurrency 64.
The curl baseline forks a few processes per request, so it runs a smaller batch (its jobs/s
do not depend on the batch size). The tools run interleaved (one run of each per round, five
rounds; curl in the first three) after two untimed warm-up rounds. Targets: batch_runner >=
0.8x the floor, >= 5x curl.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import common as c

SIM_ARGS = ("--image-scale", "0.01")
CONCURRENCY = 64


@dataclass
class Sizes:
    jobs: int
    curl_jobs: int
    repeats: int  # rounds for the two Python tools (curl: at most c.REPEATS, it is slow)
    warm_ups: int


def sizes(quick: bool) -> Sizes:
    # five rounds, not three: a run takes ~1.5 s here and this VM's disk drifts between runs
    return Sizes(40, 16, 1, 0) if quick else Sizes(2000, 300, max(c.REPEATS, 5), 2)


def _requests_per_job(sim: c.Simulator, jobs: int) -> float:
    return sum(sim.stats()["requests"].values()) / jobs


def _inner_wall(result: c.Timed) -> float | None:
    """The tool's own wall time (interpreter start-up and imports excluded), if it prints one."""
    try:
        return float(result.json()["wall_seconds"])
    except (ValueError, TypeError, KeyError):
        return None


@dataclass
class _Tool:
    name: str
    make_cmd: Callable[[Path], list[str]]
    out: Path  # its run folders go under here, one per run
    jobs: int
    runs: list[c.Timed] = field(default_factory=list)
    per_job: list[float] = field(default_factory=list)

    def once(self, sim: c.Simulator, dest: str) -> None:
        sim.reset()
        self.runs.append(c.timed(self.make_cmd(self.out / dest), env=c.env_for(sim.url)))
        self.per_job.append(_requests_per_job(sim, self.jobs))

    def figures(self) -> dict:
        wall = c.median_of(self.runs, lambda r: r.wall)
        inner = [w for w in map(_inner_wall, self.runs) if w is not None]
        return {
            "jobs": self.jobs,
            "wall": wall,
            "inner": sorted(inner)[len(inner) // 2] if inner else None,
            "jobs_s": self.jobs / wall,
            "rss": c.median_of(self.runs, lambda r: r.rss_mb),
            "req_job": sorted(self.per_job)[len(self.per_job) // 2],
        }


def _measure(sim: c.Simulator, tools: list[_Tool], size: Sizes) -> None:
    """`size.warm_ups` untimed rounds of the two Python tools, then `size.repeats` rounds of one
    run of every tool, interleaved: a disk or machine that drifts during the benchmark then
    weighs on every tool alike instead of on whichever runs first (on this VM, creating
    thousands of files costs far more system time in the first runs after a quiet spell).
    curl forks per request: its figure does not depend on a warm disk, and its runs are slow,
    so it runs at most c.REPEATS times.

    Run folders stay until the work folder goes: on ext4, files created just after thousands
    were deleted cost a scan past the freed inodes (~0.5 ms each), which would time the file
    system instead of the tool."""
    python_tools = [t for t in tools if t.name != "curl_baseline.sh"]
    for w in range(size.warm_ups):
        for tool in python_tools:
            tool.once(sim, f"warm-up{w}")
    for tool in python_tools:
        tool.runs.clear()
        tool.per_job.clear()
    for i in range(size.repeats):
        for tool in tools:
            if tool in python_tools or i < c.REPEATS:
                tool.once(sim, f"r{i}")


def run(quick: bool = False) -> dict:
    """Measure the three tools; returns the figures (jobs/s by tool and the ratios)."""
    size = sizes(quick)
    curl_ok = shutil.which("curl") is not None
    with c.workdir("overhead") as tmp, c.simulator(*SIM_ARGS) as sim:
        manifest = c.write_manifest(tmp / "jobs.yaml", c.prompts(size.jobs, "runner"))
        floor_prompts = c.write_prompts(tmp / "floor.txt", c.prompts(size.jobs, "floor"))
        curl_prompts = c.write_prompts(tmp / "curl.txt", c.prompts(size.curl_jobs, "curl"))
        conc = str(CONCURRENCY)
        ours = _Tool(
            "batch_runner",
            lambda d: c.run_cmd(manifest, d, "--concurrency", conc),
            tmp / "runner",
            size.jobs,
        )
        floor = _Tool(
            "floor.py",
            lambda d: c.module_cmd("floor", str(floor_prompts), str(d), "--concurrency", conc),
            tmp / "floor",
            size.jobs,
        )
        tools = [ours, floor]
        if curl_ok:
            script = str(c.HERE / "curl_baseline.sh")
            tools.append(
                _Tool(
                    "curl_baseline.sh",
                    lambda d: ["bash", script, str(curl_prompts), str(d), conc],
                    tmp / "curl",
                    size.curl_jobs,
                )
            )
        _measure(sim, tools, size)
    return {tool.name: tool.figures() for tool in tools}


def report(figures: dict) -> str:
    rows = [
        [name, f["jobs"], f["wall"], f["jobs_s"], f["inner"] or "-", f["rss"], f["req_job"]]
        for name, f in figures.items()
    ]
    text = c.table(
        "1. Overhead (zero latency, concurrency 64, median of interleaved runs)",
        ["tool", "jobs", "wall s", "jobs/s", "in-process s", "peak RSS MB", "requests/job"],
        rows,
    )
    ours = figures["batch_runner"]["jobs_s"]
    vs_floor = ours / figures["floor.py"]["jobs_s"]
    text += f"\nbatch_runner / floor = {vs_floor:.2f} (target >= 0.8: {c.verdict(vs_floor >= 0.8)})"
    ours_in, floor_in = figures["batch_runner"]["inner"], figures["floor.py"]["inner"]
    if ours_in and floor_in:
        text += (
            f"\nbatch_runner / floor in-process = {floor_in / ours_in:.2f} (interpreter start-up"
            " and imports excluded; ours still reads and validates the manifest, writes the"
            " state file and report.html)"
        )
    if "curl_baseline.sh" in figures:
        vs_curl = ours / figures["curl_baseline.sh"]["jobs_s"]
        text += f"\nbatch_runner / curl = {vs_curl:.1f} (target >= 5: {c.verdict(vs_curl >= 5)})"
    else:
        text += "\ncurl not installed: no curl baseline"
    return text + "\n"


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
