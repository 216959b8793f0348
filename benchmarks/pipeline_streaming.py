"""Benchmark 11, pipeline streaming (issue 27): a 2-stage pipeline (stills → clips) run as one
`stages:` manifest, where a clip starts as soon as its still is done, in the same pool, against
the same two stages run one after the other (stage 1 run to its end, then a second manifest
whose clips sweep the first run's files: `image_url: {files: "RUN/images/*"}`, sent inline).

Same simulator settings for both (uniform latency, every model), same --concurrency. Figures:
wall time (from the first process started to the last one finished; the median of
BENCH_REPEATS), jobs done, submits and the most jobs in flight at once. Quick: 6 stills,
short latency.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks import common as c

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "blackforestlabs/flux-3/image-to-video/draft"


def _params(quick: bool) -> dict:
    if quick:
        return {"stills": 6, "latency": "0.1:0.3", "concurrency": 4}
    return {"stills": 40, "latency": "1:3", "concurrency": 8}


def _stills(n: int, pad: str) -> str:
    """The stills stage (or manifest) indented by `pad`."""
    jobs = "".join(f"{pad}  - {json.dumps(t)}\n" for t in c.prompts(n, "pipe"))
    return f"{pad}model: {T2I}\n{pad}jobs:\n{jobs}"


def _clip(src: str, pad: str) -> str:
    fields = (f"image_url: {src}", 'prompt: "the camera pulls back"', 'duration: "5"')
    return f"{pad}  - " + "".join(
        f"{'' if i == 0 else pad + '    '}{f}\n" for i, f in enumerate(fields)
    )


def write_pipeline(path: Path, n: int) -> Path:
    text = "stages:\n  stills:\n" + _stills(n, "    ")
    text += f"  clips:\n    model: {I2V}\n    jobs:\n" + _clip("{from: stills}", "    ")
    path.write_text(text, encoding="utf-8")
    return path


def write_stage_one(path: Path, n: int) -> Path:
    path.write_text(_stills(n, ""), encoding="utf-8")
    return path


def write_stage_two(path: Path, stills_run: Path) -> Path:
    """A clip per file of the stills run: a folder sweep (relative to this manifest)."""
    src = json.dumps({"files": f"{stills_run.name}/images/*"})
    path.write_text(f"model: {I2V}\nsweep:\n{_clip(src, '')}", encoding="utf-8")
    return path


def run(quick: bool = False) -> dict:
    p = _params(quick)
    conc = ("--concurrency", str(p["concurrency"]))
    streamed, sequential = [], []
    with (
        c.workdir("pipeline") as tmp,
        c.simulator("--latency", p["latency"], "--image-scale", "0.02") as sim,
    ):
        env = c.env_for(sim.url)
        for r in range(c.repeats(quick)):
            sim.reset()
            manifest = write_pipeline(tmp / f"pipeline{r}.yaml", p["stills"])
            done = c.timed(c.run_cmd(manifest, tmp / f"streamed{r}", *conc), env=env)
            streamed.append(_figures(done.wall, [done], sim))
            sim.reset()
            stills = tmp / f"stills{r}"
            started = time.perf_counter()
            one = c.timed(
                c.run_cmd(write_stage_one(tmp / f"one{r}.yaml", p["stills"]), stills, *conc),
                env=env,
            )
            two_manifest = write_stage_two(tmp / f"two{r}.yaml", stills)
            two = c.timed(c.run_cmd(two_manifest, tmp / f"clips{r}", *conc), env=env)
            sequential.append(_figures(time.perf_counter() - started, [one, two], sim))
    return {"params": p, "streamed": streamed, "sequential": sequential}


def _figures(wall: float, runs: list[c.Timed], sim: c.Simulator) -> dict:
    jobs = sum(sum(r.json()["counts"].values()) for r in runs)
    done = sum(r.json()["counts"].get("done", 0) for r in runs)
    stats = sim.stats()
    return {
        "wall": wall,
        "jobs": jobs,
        "done": done,
        "submitted": stats["submitted"],
        "max_concurrent": stats["max_concurrent"],
    }


def report(res: dict) -> str:
    p = res["params"]
    rows = []
    for name, runs in (
        ("one `stages:` manifest (streamed)", res["streamed"]),
        ("stage 1, then stage 2 (folder sweep)", res["sequential"]),
    ):
        wall = c.median_of(runs, lambda r: r["wall"])  # type: ignore[arg-type,return-value]
        last = runs[-1]
        rows.append(
            [
                name,
                wall,
                f"{last['done']}/{last['jobs']}",
                last["submitted"],
                last["max_concurrent"],
            ]
        )
    gain = rows[1][1] / rows[0][1] if rows[0][1] else float("nan")
    title = (
        f"11. Pipeline streaming ({p['stills']} stills → {p['stills']} clips, latency "
        f"{p['latency']} s uniform, --concurrency {p['concurrency']}, median of "
        f"{len(res['streamed'])})"
    )
    header = ["how", "wall s", "done/jobs", "submits", "max in flight"]
    return c.table(title, header, rows) + f"\nsequential / streamed wall: {gain:.2f}x\n"


if __name__ == "__main__":
    c.main(__doc__.splitlines()[0], run, report)
