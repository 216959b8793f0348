"""Benchmark 8, media inputs: `validate` of a 10,000-picture folder sweep, side by side with
`validate` of a 100,000-job text manifest (benchmark 4's), and a small run sending pictures
inline.

A folder sweep hashes every file and reads every image header before anything is sent, but
keeps only a reference per file (path, sha256, bytes, media type): the data is encoded per
job at submit time. Target: the folder sweep's peak RSS no higher than the text manifest's.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from benchmarks import common as c

MODEL = "alibaba/happyhorse-1.1/image-to-video"


def _params(quick: bool) -> tuple[int, int, int]:
    """(pictures, text jobs, pictures in the run)"""
    return (300, 2000, 20) if quick else (10_000, 100_000, 200)


def _pictures(folder: Path, n: int) -> None:
    """`n` distinct small PNGs (a 64x48 picture each, about 0.3 KB to 1 KB)."""
    folder.mkdir(parents=True)
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (i % 256, (i // 256) % 256, 90)).save(buf, "PNG")
        (folder / f"p{i:05d}.png").write_bytes(buf.getvalue())


def _sweep(path: Path, pattern: str) -> Path:
    path.write_text(
        f"model: {MODEL}\n"
        'options: {name_template: "{input_stem}.{ext}"}\n'
        f'sweep:\n  - {{prompt: "slow zoom", image_url: {{files: "{pattern}"}}}}\n',
        encoding="utf-8",
    )
    return path


def run(quick: bool = False) -> dict:
    pictures, text_jobs, run_pictures = _params(quick)
    reps = c.repeats(quick)
    with c.workdir("media") as tmp, c.simulator("--image-scale", "0.01") as sim:
        _pictures(tmp / "stills", pictures)
        sweep = _sweep(tmp / "folder.yaml", "stills/*.png")
        text = c.write_manifest(tmp / "text.yaml", c.prompts(text_jobs, "t"))
        folder = [c.timed([c.CLI, "validate", str(sweep)]) for _ in range(reps)]
        plain = [c.timed([c.CLI, "validate", str(text)]) for _ in range(reps)]
        subset = tmp / "subset"
        subset.mkdir()
        for picture in sorted((tmp / "stills").iterdir())[:run_pictures]:
            (subset / picture.name).write_bytes(picture.read_bytes())
        small = _sweep(tmp / "small.yaml", "subset/*.png")
        sim.reset()
        cmd = c.run_cmd(small, tmp / "run", "--concurrency", "16", "--max-jobs", str(pictures))
        done = c.timed(cmd, env=c.env_for(sim.url))
    return {
        "pictures": pictures,
        "text_jobs": text_jobs,
        "folder": (c.median_of(folder, lambda r: r.wall), max(r.rss_mb for r in folder)),
        "text": (c.median_of(plain, lambda r: r.wall), max(r.rss_mb for r in plain)),
        "run": (done.wall, done.rss_mb, (done.json() or {}).get("jobs")),
    }


def report(f: dict) -> str:
    rows = [
        [f"validate: folder sweep of {f['pictures']:,} pictures", *f["folder"], ""],
        [f"validate: text manifest of {f['text_jobs']:,} jobs", *f["text"], ""],
        [f"run: {f['run'][2]} pictures sent inline", f["run"][0], f["run"][1], ""],
    ]
    text = c.table(
        "8. Media inputs (folder sweep, zero-latency simulator)",
        ["what", "seconds", "peak RSS MB", "note"],
        rows,
    )
    ok = f["folder"][1] <= f["text"][1]
    text += f"folder sweep RSS <= text manifest RSS: {c.verdict(ok)}"
    text += " (quick sizes prove nothing)\n" if f["pictures"] < 10_000 else "\n"
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
