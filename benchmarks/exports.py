"""Benchmark 9, data-set exports: `export --format parquet` and `--format webdataset` of a run
of many small files, beside `--format jsonl` (the metadata alone) as the baseline, at two
sizes: wall time and peak RSS of each export.

The run is synthesized (every job done, one small PNG each, written straight into the state
file and the images folder), so the figures are the export's own. Memory should stay flat in
the number of files: the state is read a batch of jobs at a time, parquet is written a row
group at a time, tar shards stream.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import sys
import time
from pathlib import Path

from batch_runner.jobs import JobSpec
from batch_runner.store.state import STATE_FILE, StateStore
from benchmarks import common as c

MODEL = "bytedance/seedream-5/lite/text-to-image"
FORMATS = ("jsonl", "parquet", "webdataset")


def _params(quick: bool) -> tuple[int, ...]:
    return (500, 2000) if quick else (20_000, 100_000)


def synthesize(run_dir: Path | str, jobs: int) -> None:
    """A run directory of `jobs` done jobs with one distinct small PNG each (about 0.1 KB)."""
    from PIL import Image

    run_dir = Path(run_dir)
    specs = [
        JobSpec(MODEL, {"prompt": text}, meta={"n": i})
        for i, text in enumerate(c.prompts(jobs, "x"))
    ]
    store = StateStore.open(run_dir, create=True)
    store.sync_jobs(specs)
    store.close()
    (run_dir / "images").mkdir()
    files = []
    for idx in range(1, jobs + 1):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (idx % 256, (idx // 256) % 256, 90)).save(buf, "PNG")
        data = buf.getvalue()
        name = f"images/{idx:06d}-job.png"
        (run_dir / name).write_bytes(data)
        files.append((idx, name, hashlib.sha256(data).hexdigest(), len(data)))
    now = time.time()
    with sqlite3.connect(run_dir / STATE_FILE) as conn:
        conn.execute("UPDATE jobs SET state = 'done', attempts = 1, updated_at = ?", (now,))
        conn.executemany(
            "INSERT INTO attempts(job_idx, n, request_id, submitted_at) VALUES (?, 1, ?, ?)",
            [(idx, f"req-{idx}", now) for idx, *_ in files],
        )
        conn.executemany(
            "INSERT INTO files(job_idx, k, file_name, sha256, bytes) VALUES (?, 1, ?, ?, ?)",
            files,
        )


def run(quick: bool = False) -> dict:
    rows = []
    for jobs in _params(quick):
        with c.workdir("exports") as tmp:
            run_dir = tmp / "run"
            # in a child: the specs would raise this process's peak RSS, which the timed
            # children started afterwards would inherit as their own starting peak
            code = f"from benchmarks.exports import synthesize as s; s({str(run_dir)!r}, {jobs})"
            setup = c.timed([sys.executable, "-c", code]).wall
            for fmt in FORMATS:
                out = tmp / f"out-{fmt}"
                result = c.timed(
                    [c.CLI, "export", str(run_dir), "--format", fmt, "--out", str(out)]
                )
                rows.append(
                    {"jobs": jobs, "format": fmt, "setup": setup, "timed": result, "mb": _mb(out)}
                )
    return {"rows": rows}


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def report(f: dict) -> str:
    base = {r["jobs"]: r["timed"] for r in f["rows"] if r["format"] == "jsonl"}
    rows = [
        [
            f"{r['jobs']:,}",
            r["format"],
            r["timed"].wall,
            r["timed"].wall / base[r["jobs"]].wall,
            r["jobs"] / r["timed"].wall,
            r["timed"].rss_mb,
            r["mb"],
        ]
        for r in f["rows"]
    ]
    header = ["files", "format", "wall s", "x jsonl", "files/s", "peak RSS MB", "output MB"]
    return c.table(
        "12. Data-set exports (one small PNG per job; jsonl is the baseline)", header, rows
    )


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
