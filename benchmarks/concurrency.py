"""Benchmark 2, concurrency efficiency: fixed latency L = 1 s, capacity 64 >= C = 32, 320 jobs.

Efficiency = throughput / (C / L). Throughput is counted two ways: over the runner's own wall
time (`wall_seconds` of `run --json`: from the first submit to the last file) and over the
whole process (adds interpreter start-up, manifest validation and the closing report).
Target >= 0.95.
"""

from __future__ import annotations

from benchmarks import common as c


def _params(quick: bool) -> tuple[int, int, float, int]:
    """(jobs, concurrency, latency, repeats)"""
    return (32, 8, 0.25, 1) if quick else (320, 32, 1.0, c.REPEATS)


def run(quick: bool = False) -> dict:
    jobs, conc, latency, repeats = _params(quick)
    sim_args = ("--latency", str(latency), "--capacity", "64", "--image-scale", "0.01")
    runs, inner, peaks = [], [], []
    with c.workdir("concurrency") as tmp, c.simulator(*sim_args) as sim:
        manifest = c.write_manifest(tmp / "jobs.yaml", c.prompts(jobs, "conc"))
        for i in range(repeats):
            sim.reset()
            out = tmp / f"r{i}"
            result = c.timed(
                c.run_cmd(manifest, out, "--concurrency", str(conc)), env=c.env_for(sim.url)
            )
            runs.append(result)
            inner.append(result.json()["wall_seconds"])
            peaks.append(sim.stats()["max_concurrent"])
            # the run directory stays until the work folder goes: on ext4, files created just
            # after thousands were deleted cost a scan past the freed inodes (~0.5 ms each),
            # which would time the file system instead of the tool
    ideal = conc / latency
    wall = c.median_of(runs, lambda r: r.wall)
    inner_wall = sorted(inner)[len(inner) // 2]
    return {
        "jobs": jobs,
        "concurrency": conc,
        "latency": latency,
        "wall": wall,
        "inner_wall": inner_wall,
        "eff_inner": jobs / inner_wall / ideal,
        "eff_process": jobs / wall / ideal,
        "max_concurrent": max(peaks),
        "rss": c.median_of(runs, lambda r: r.rss_mb),
    }


def report(f: dict) -> str:
    title = (
        f"2. Concurrency efficiency (latency {f['latency']:g} s, C = {f['concurrency']}, "
        f"{f['jobs']} jobs, ideal {f['concurrency'] / f['latency']:g} jobs/s)"
    )
    rows = [
        ["run wall (first submit → last file)", f["inner_wall"], f["eff_inner"]],
        ["process wall (start-up included)", f["wall"], f["eff_process"]],
    ]
    text = c.table(title, ["measured over", "wall s", "efficiency"], rows)
    text += f"\nsimulator saw at most {f['max_concurrent']} jobs in flight"
    text += f"; peak RSS {f['rss']:.1f} MB"
    ok = f["eff_inner"] >= 0.95
    text += f"\ntarget >= 0.95 (run wall): {c.verdict(ok)}\n"
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
