"""Benchmark 3, requests per job and detection delay, batch_runner vs a 2-second /status poller.

Simulator: latency uniform 4-8 s, capacity 16, concurrency 32, 96 jobs (so jobs also wait in
the queue). Requests per job = (submit + status + result + file requests) / jobs, from
/_sim/stats. Detection delay = the file's mtime minus the simulator's `finished_at` for that
request_id (GET /_sim/jobs). The baseline (benchmarks/status_poller.py) runs at the same time
on its own simulator. Target: <= 0.6x the baseline's requests per job, p50 delay <= 1.5 s.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks import common as c


def _params(quick: bool) -> tuple[int, int, int, str, int]:
    """(jobs, concurrency, capacity, latency, repeats)"""
    return (8, 4, 2, "0.3:0.6", 1) if quick else (96, 32, 16, "4:8", c.REPEATS)


def _delays(sim: c.Simulator, file_mtimes: dict[str, float]) -> list[float]:
    finished = {j["request_id"]: j["finished_at"] for j in sim.get("/_sim/jobs")}
    return [t - finished[rid] for rid, t in file_mtimes.items() if finished.get(rid)]


def _baseline_mtimes(out: Path) -> dict[str, float]:
    rows = (json.loads(line) for line in (out / "downloads.jsonl").read_text().splitlines())
    return {r["request_id"]: (out / r["file"]).stat().st_mtime for r in rows}


def _one_round(tmp: Path, i: int, sims: list[c.Simulator], size: tuple) -> list[dict]:
    jobs, conc = size[0], size[1]
    manifest = c.write_manifest(tmp / f"jobs{i}.yaml", c.prompts(jobs, f"poll{i}"))
    prompts = c.write_prompts(tmp / f"base{i}.txt", c.prompts(jobs, f"base{i}"))
    ours_dir, base_dir = tmp / f"ours{i}", tmp / f"base{i}"
    for sim in sims:
        sim.reset()
    # both clients run at once, each on its own simulator: the machine is nearly idle anyway
    ours = c.spawn(
        c.run_cmd(manifest, ours_dir, "--concurrency", str(conc)), env=c.env_for(sims[0].url)
    )
    base = c.spawn(
        c.module_cmd("status_poller", str(prompts), str(base_dir), "--concurrency", str(conc)),
        env=c.env_for(sims[1].url),
    )
    results = [ours.wait(), base.wait()]
    mtimes = [c.mtimes_by_request(ours_dir), _baseline_mtimes(base_dir)]
    out = []
    for sim, result, found in zip(sims, results, mtimes, strict=True):
        if result.code != 0:
            raise RuntimeError(f"benchmark 3 client failed: {result.stderr[-1500:]}")
        delays = _delays(sim, found)
        out.append(
            {
                "req_job": sum(sim.stats()["requests"].values()) / jobs,
                "p50": c.percentile(delays, 0.5),
                "p95": c.percentile(delays, 0.95),
                "wall": result.wall,
            }
        )
    return out


def run(quick: bool = False) -> dict:
    size = _params(quick)
    jobs, conc, capacity, latency, repeats = size
    sim_args = ("--latency", latency, "--capacity", str(capacity), "--image-scale", "0.01")
    rounds = []
    with (
        c.workdir("polling") as tmp,
        c.simulator(*sim_args) as sim_a,
        c.simulator(*sim_args) as sim_b,
    ):
        for i in range(repeats):
            rounds.append(_one_round(tmp, i, [sim_a, sim_b], size))
    figures: dict = {"jobs": jobs, "concurrency": conc, "capacity": capacity, "latency": latency}
    for n, name in enumerate(("batch_runner", "status_poller.py")):
        figures[name] = {
            k: statistics.median(r[n][k] for r in rounds) for k in ("req_job", "p50", "p95", "wall")
        }
    return figures


def report(f: dict) -> str:
    title = (
        f"3. Requests per job and detection delay (latency {f['latency']} s, capacity "
        f"{f['capacity']}, concurrency {f['concurrency']}, {f['jobs']} jobs, median of runs)"
    )
    names = ("batch_runner", "status_poller.py")
    rows = [[n, f[n]["req_job"], f[n]["p50"], f[n]["p95"], f[n]["wall"]] for n in names]
    text = c.table(title, ["client", "requests/job", "delay p50 s", "delay p95 s", "wall s"], rows)
    ratio = f["batch_runner"]["req_job"] / f["status_poller.py"]["req_job"]
    p50 = f["batch_runner"]["p50"]
    ok = ratio <= 0.6 and p50 <= 1.5
    text += f"\nrequests/job ratio = {ratio:.2f}, p50 delay = {p50:.2f} s"
    text += f" (target <= 0.6 and <= 1.5 s: {c.verdict(ok)})\n"
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
