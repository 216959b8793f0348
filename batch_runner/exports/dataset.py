"""`export --format parquet|webdataset`: where the data set goes, the reader feeding a writer,
and the webdataset's `_stats.json`.

Defaults never write a `metadata.*` file in the run directory (metadata.jsonl is the run's own
record): `RUN_DIR/export.parquet` (one file), `RUN_DIR/export-parquet/` (parquet shards, with
--shard-size), `RUN_DIR/export-webdataset/` (tar shards).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batch_runner.errors import UsageError
from batch_runner.exports.samples import Sample, Tally, open_samples
from batch_runner.outputs.files import atomic_text
from batch_runner.report.export import EXPORT_STEM, export_path
from batch_runner.store.state import STATE_FILE

DATASET_FORMATS = ("parquet", "webdataset")
DEFAULT_SHARD_BYTES = 1_000_000_000  # ~1 GB: a shard a worker downloads in seconds
STATS_FILE = "_stats.json"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


class SampleWriter(Protocol):
    def write(self, sample: Sample) -> None: ...
    def close(self) -> Any: ...
    def abort(self) -> None: ...


@dataclass
class DatasetExport:
    path: Path  # the file, or the folder of shards
    files: int  # files written (1 for one parquet file)
    tally: Tally


def parse_size(text: str, origin: str = "--shard-size") -> int:
    """`500MB`, `1GB`, `64MiB`, or a number of bytes."""
    m = _SIZE.fullmatch(text)
    unit = _UNITS.get(m[2].lower()) if m else None
    if m is None or unit is None:
        raise UsageError(f"{origin} must be a size like 500MB, 1GB or 64MiB, got '{text}'")
    size = int(float(m[1]) * unit)
    if size < 1:
        raise UsageError(f"{origin} must be more than 0 bytes, got '{text}'")
    return size


def export_dataset(
    run_dir: Path,
    fmt: str,
    out: Path | None,
    shard_size: int | None = None,
    marked: str | None = None,
) -> DatasetExport:
    """Write the data set of `run_dir` (a run directory or a folder of shards) as `fmt`
    (`marked`: only the outputs of jobs marked keep, or reject)."""
    target, shard_bytes = _target(run_dir, fmt, out, shard_size)
    with open_samples(run_dir, marked) as (run, tally):
        writer: SampleWriter
        if fmt == "parquet":
            from batch_runner.exports.parquet import ParquetSampleWriter, plan

            writer = ParquetSampleWriter(target, plan(run.samples()), shard_bytes)
        else:
            from batch_runner.exports.webdataset import WebDatasetSampleWriter

            writer = WebDatasetSampleWriter(target, shard_bytes or DEFAULT_SHARD_BYTES)
        try:
            for sample in run.samples(tally):
                writer.write(sample)
            written = writer.close()
        except BaseException:
            writer.abort()  # no partial shard or file is left under a final name
            raise
    if fmt == "webdataset":
        _write_stats(target, tally, [s.as_json() for s in written])
    return DatasetExport(target, len(written), tally)


def _target(
    run_dir: Path, fmt: str, out: Path | None, shard_size: int | None
) -> tuple[Path, int | None]:
    """The file or folder to write, and the shard bound (None: one file)."""
    if fmt not in DATASET_FORMATS:
        raise UsageError(f"unknown data set format {fmt!r}: use one of {DATASET_FORMATS}")
    if fmt == "parquet" and (out is None or _names_a_file(out, ".parquet")):
        if out is None and shard_size is None:
            return export_path(run_dir, fmt, None), None
        if out is not None and shard_size is not None:
            raise UsageError(f"{out}: --shard-size writes a folder of shards, give --out FOLDER")
        if out is not None:
            return export_path(run_dir, fmt, out), None
    if fmt == "webdataset" and out is not None and _names_a_file(out, ".tar"):
        raise UsageError(f"{out}: a webdataset is a folder of NNNNN.tar shards, give --out FOLDER")
    default = run_dir / f"{EXPORT_STEM}-{fmt}"
    folder = Path(out) if out is not None else default
    if folder.resolve() == run_dir.resolve() or (folder / STATE_FILE).exists():
        raise UsageError(
            f"{folder} is a run directory: the shards need a folder of their own "
            f"(leave out --out for {default})"
        )
    return folder, shard_size or DEFAULT_SHARD_BYTES


def _names_a_file(out: Path, *suffixes: str) -> bool:
    return Path(out).is_file() or (not Path(out).is_dir() and Path(out).suffix.lower() in suffixes)


def _write_stats(folder: Path, tally: Tally, shards: list[dict[str, Any]]) -> None:
    """`_stats.json`: what the shards hold and what was left out, stable across exports."""
    stats = {**tally.as_json(), "shards": shards}
    with atomic_text(folder / STATS_FILE) as fh:
        fh.write(json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
