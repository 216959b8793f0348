"""Benchmark 5, big files: peak RSS of a run whose outputs are 50 MB each vs the same run with
small files (simulator `--pad-bytes`). Target: growth < 20 MB (downloads are streamed).
"""

from __future__ import annotations

import shutil

from benchmarks import common as c


def _params(quick: bool) -> tuple[int, int, int]:
    """(jobs, pad bytes, repeats)"""
    return (2, 2_000_000, 1) if quick else (4, 50_000_000, c.REPEATS)


def _peak(pad: int, jobs: int, repeats: int) -> tuple[float, float, int]:
    """(median peak RSS MB, median wall s, bytes downloaded) of `jobs` jobs, files >= pad."""
    runs, size = [], 0
    sim_args = ("--image-scale", "0.05", "--pad-bytes", str(pad))
    with c.workdir("bigfiles") as tmp, c.simulator(*sim_args) as sim:
        manifest = c.write_manifest(tmp / "jobs.yaml", c.prompts(jobs, "big"))
        for i in range(repeats):
            sim.reset()
            out = tmp / f"r{i}"
            result = c.timed(
                c.run_cmd(manifest, out, "--concurrency", str(jobs)), env=c.env_for(sim.url)
            )
            runs.append(result)
            size = result.json()["bytes"]
            shutil.rmtree(out, ignore_errors=True)
    return c.median_of(runs, lambda r: r.rss_mb), c.median_of(runs, lambda r: r.wall), size


def run(quick: bool = False) -> dict:
    jobs, pad, repeats = _params(quick)
    return {
        "jobs": jobs,
        "pad": pad,
        "small": _peak(0, jobs, repeats),
        "big": _peak(pad, jobs, repeats),
    }


def report(f: dict) -> str:
    rows = [[name, f"{f[name][2] / 1e6:,.1f}", f[name][1], f[name][0]] for name in ("small", "big")]
    text = c.table(
        f"5. Big files ({f['jobs']} jobs in parallel, files padded to {f['pad'] / 1e6:g} MB)",
        ["files", "MB downloaded", "wall s", "peak RSS MB"],
        rows,
    )
    growth = f["big"][0] - f["small"][0]
    text += f"\npeak RSS growth = {growth:.1f} MB (target < 20 MB: {c.verdict(growth < 20)})\n"
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
