"""Benchmark 6, polling at scale: batch_runner vs the 2-second /status poller, C in flight.

Grid (a subset of in flight C x latency x capacity, so the whole grid takes ~10 minutes):
- every C in {32, 300, 1000, 3000} with latency uniform 5-10 s and unlimited capacity;
- at C = 300 and 1000 also: uniform 20-40 s; uniform 5-10 s with capacity C/2 (jobs wait in
  the queue with `queue_position`); and a long tail: 90 % uniform 5-10 s, 10 % five times
  longer (25-50 s, sent as per-job `[sim:latency=S]` prompt directives).
- at C = 1500, uniform 8-16 s (issue 30, item 6).
`GRID_ONLY=1500:8:16,1000:5:10` (C:latency, /capacity when limited) runs only those points;
`GRID_REPLAY=0` skips the offline tables. Jobs = 3 x C (2 x C at 3000). Both clients run at
once, each on its own simulator
(`--image-scale 0.01`), with the same latencies. Per client: requests per job (/_sim/stats),
throughput / (C' / mean latency) where C' = min(C, capacity) and the mean latency is the
simulator's own (finished_at - started_at), p50/p95 completion-to-file delay, CPU ms per job
(user + sys of the client process, os.wait4), peak RSS, and the simulator's CPU per job.
Targets for batch_runner at every point: requests/job <= 0.5 x the poller's and <= 4.5
(1.5 x the lower bound of 3), throughput >= the poller's, p50 delay <= 1 s, CPU ms/job <= the
poller's, peak RSS <= 150 MB at 3000 in flight.
"""

from __future__ import annotations

import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common as c
from benchmarks import frontier, planner_replay
from benchmarks.polling import _baseline_mtimes, _delays

LOWER_BOUND = 3.0  # submit, one /result that finds the job done, the file


@dataclass(frozen=True)
class Point:
    inflight: int
    latency: str  # the simulator's --latency A:B
    capacity: int  # 0 = unlimited
    tail: bool = False  # 10 % of the jobs take five times longer
    jobs_per_slot: int = 3

    @property
    def label(self) -> str:
        lat = self.latency.replace(":", "-") + " s" + (" +10% x5" if self.tail else "")
        return lat

    @property
    def key(self) -> str:
        """C:A:B[/capacity][+tail] (`GRID_ONLY=1500:8:16,1000:5:10` runs just those points)."""
        key = f"{self.inflight}:{self.latency}" + (f"/{self.capacity}" if self.capacity else "")
        return key + ("+tail" if self.tail else "")

    @property
    def jobs(self) -> int:
        return self.inflight * self.jobs_per_slot


def points(quick: bool) -> list[Point]:
    if quick:
        return [Point(8, "0.3:0.6", 0), Point(8, "0.3:0.6", 4, tail=True)]
    grid = [Point(c_, "5:10", 0) for c_ in (32, 300, 1000)]
    grid.append(Point(3000, "5:10", 0, jobs_per_slot=2))
    for c_ in (300, 1000):
        grid += [
            Point(c_, "20:40", 0),
            Point(c_, "5:10", c_ // 2),
            Point(c_, "5:10", 0, tail=True),
        ]
    grid.append(Point(1500, "8:16", 0))  # issue 30: throughput >= 0.95x, requests <= 0.5x
    only = [x for x in os.environ.get("GRID_ONLY", "").split(",") if x]
    return [p for p in grid if p.key in only] if only else grid


def _texts(point: Point, tag: str) -> list[str]:
    """Prompts; with a tail, every tenth carries a `[sim:latency=S]` five times the usual."""
    texts = c.prompts(point.jobs, tag)
    if not point.tail:
        return texts
    low, high = (5 * float(x) for x in point.latency.split(":"))
    rng = random.Random(6)  # both clients get the same tail latencies
    return [
        f"{t} [sim:latency={rng.uniform(low, high):.2f}]" if i % 10 == 9 else t
        for i, t in enumerate(texts)
    ]


def _measure(sim: c.Simulator, result: c.Timed, mtimes: dict[str, float], point: Point) -> dict:
    if result.code != 0:
        raise RuntimeError(f"benchmark 6 client failed: {result.stderr[-1500:]}")
    jobs = sim.get("/_sim/jobs")
    runs = [j["finished_at"] - j["started_at"] for j in jobs if j.get("finished_at")]
    ideal = min(point.inflight, point.capacity or point.inflight) / statistics.fmean(runs)
    delays = _delays(sim, mtimes)
    return {
        "req_job": sum(sim.stats()["requests"].values()) / point.jobs,
        "thru": point.jobs / result.wall / ideal,
        "p50": c.percentile(delays, 0.5),
        "p95": c.percentile(delays, 0.95),
        "cpu_ms": 1000 * result.cpu / point.jobs,
        "cpu_s": result.cpu,
        "rss": result.rss_mb,
        "wall": result.wall,
    }


def _cpu_times() -> list[float]:
    """Machine-wide CPU seconds from /proc/stat: [busy, softirq + irq, all]."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(ticks[:8])
    idle = ticks[3] + ticks[4]
    return [(total - idle) / hz, (ticks[5] + ticks[6]) / hz, total / hz]


def _where_cpu_went(before: list[float], rows: list[dict], sims_cpu: list[float]) -> dict:
    """Shares of the machine's CPU time during one point (other helpers' work included)."""
    busy, irq, total = (b - a for a, b in zip(before, _cpu_times(), strict=True))
    share = {
        "ours": rows[0]["cpu_s"] / total,
        "poller": rows[1]["cpu_s"] / total,
        "sims": sum(sims_cpu) / total,
        "irq": irq / total,
        "busy": busy / total,
    }
    share["other"] = share["busy"] - share["ours"] - share["poller"] - share["sims"] - share["irq"]
    return share


def _one_point(tmp: Path, point: Point, sims: list[c.Simulator]) -> list[dict]:
    name = f"c{point.inflight}-{point.latency.replace(':', '_')}-{point.capacity}-{point.tail}"
    manifest = c.write_manifest(tmp / f"{name}.yaml", _texts(point, "grid"))
    prompts = c.write_prompts(tmp / f"{name}.txt", _texts(point, "base"))
    ours_dir, base_dir = tmp / f"ours-{name}", tmp / f"base-{name}"
    conc = str(point.inflight)
    for sim in sims:
        sim.reset()
        sim.post_config({"latency": point.latency, "capacity": point.capacity})
    sim_cpu = [sim.cpu() for sim in sims]
    machine = _cpu_times()
    ours = c.spawn(c.run_cmd(manifest, ours_dir, "--concurrency", conc), env=c.env_for(sims[0].url))
    base = c.spawn(
        c.module_cmd("status_poller", str(prompts), str(base_dir), "--concurrency", conc),
        env=c.env_for(sims[1].url),
    )
    results = [ours.wait(), base.wait()]
    mtimes = [c.mtimes_by_request(ours_dir), _baseline_mtimes(base_dir)]
    sims_cpu = [sim.cpu() - before for sim, before in zip(sims, sim_cpu, strict=True)]
    out = [
        _measure(sim, result, found, point) | {"sim_ms": 1000 * used / point.jobs}
        for sim, result, found, used in zip(sims, results, mtimes, sims_cpu, strict=True)
    ]
    out[0]["machine"] = _where_cpu_went(machine, out, sims_cpu)
    return out


def run(quick: bool = False) -> dict:
    rows = []
    with (
        c.workdir("grid") as tmp,
        c.simulator("--image-scale", "0.01") as sim_a,
        c.simulator("--image-scale", "0.01") as sim_b,
    ):
        for point in points(quick):
            rows.append((point, _one_point(tmp, point, [sim_a, sim_b])))
    if os.environ.get("GRID_REPLAY") == "0":
        return {"rows": rows}
    # computed after the runs, so they load nothing meanwhile
    return {"rows": rows, "frontier": frontier.run(quick), "replay": planner_replay.run(quick)}


def _checks(point: Point, ours: dict, base: dict) -> list[str]:
    """The targets this point misses (empty: all met)."""
    missed = []
    if ours["req_job"] > min(0.5 * base["req_job"], 1.5 * LOWER_BOUND):
        missed.append("req/job")
    if ours["thru"] < base["thru"]:
        missed.append("throughput")
    if ours["p50"] > 1.0:
        missed.append("p50")
    if ours["cpu_ms"] > base["cpu_ms"]:
        missed.append("CPU")
    if point.inflight >= 3000 and ours["rss"] > 150:
        missed.append("RSS")
    return missed


def report(f: dict) -> str:
    header = [
        "C",
        "latency",
        "capacity",
        "jobs",
        "req/job ours / poller",
        "throughput ours / poller",
        "ratios req / thru",
        "p50 delay s ours / poller",
        "p95 delay s ours / poller",
        "CPU ms/job ours / poller",
        "peak RSS MB ours / poller",
        "sim CPU ms/job",
        "targets missed",
    ]
    rows = []
    for point, (ours, base) in f["rows"]:

        def pair(key: str, fmt: str = "{:.2f}", o: dict = ours, b: dict = base) -> str:
            return f"{fmt.format(o[key])} / {fmt.format(b[key])}"

        rows.append(
            [
                point.inflight,
                point.label,
                point.capacity or "unlimited",
                point.jobs,
                pair("req_job"),
                pair("thru"),
                f"{ours['req_job'] / base['req_job']:.2f} / {ours['thru'] / base['thru']:.3f}",
                pair("p50"),
                pair("p95"),
                pair("cpu_ms", "{:.1f}"),
                pair("rss", "{:.0f}"),
                pair("sim_ms", "{:.1f}"),
                ", ".join(_checks(point, ours, base)) or "none",
            ]
        )
    title = "6. Polling at scale (batch_runner vs the 2-second /status poller, one run each)"
    text = c.table(title, header, rows)
    text += "\n" + _cpu_table(f["rows"])
    met = sum(not _checks(p, o, b) for p, (o, b) in f["rows"])
    text += f"\nall targets met at {met} of {len(f['rows'])} points\n"
    if "replay" not in f:
        return text
    return text + "\n" + frontier.report(f["frontier"]) + "\n" + planner_replay.report(f["replay"])


def _cpu_table(rows: list) -> str:
    """Where the two cores went during each point (/proc/stat and each process's rusage)."""
    keys = ("busy", "ours", "poller", "sims", "irq", "other")
    header = ["C", "latency", "capacity", "machine busy", "batch_runner", "poller", "simulators"]
    header += ["kernel irq/softirq", "other (kernel, other processes)"]
    out = []
    for point, (ours, _) in rows:
        m = ours["machine"]
        cap = point.capacity or "unlimited"
        out.append([point.inflight, point.label, cap, *(f"{100 * m[k]:.0f} %" for k in keys)])
    return c.table("6b. Where the CPU went (share of all cores over each point)", header, out)


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
