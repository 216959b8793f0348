"""Export job records as flat rows (one per file) to CSV or JSON Lines for spreadsheets."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from batch_runner.errors import UsageError
from batch_runner.jobs import FileRecord, JobRecord, shown_input
from batch_runner.outputs.files import atomic_text
from batch_runner.outputs.metadata import media_type
from batch_runner.store.state import StateStore

HEAD = ("file_name", "key", "index", "state", "request_id", "model", "media_type")
TAIL = ("sha256", "bytes", "job_cost_usd", "reason", "mark")
FORMATS = ("csv", "jsonl")
EXPORT_STEM = "export"
# the file names Hugging Face `datasets` reads as a folder's metadata (any one of them, once)
DATASET_METADATA_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
LINEAGE = ("stage", "parent_key", "parent_file")  # pipeline jobs only (CONTRACT §4)
RESERVED = frozenset(HEAD + TAIL + LINEAGE + ("archived_from",))


def export_path(run_dir: Path, fmt: str, out: Path | None) -> Path:
    """Where an export goes: `RUN_DIR/export.<fmt>` by default. Never a `metadata.*` file in the
    run directory: metadata.jsonl is the run's own record, and a second metadata file beside it
    stops `load_dataset("imagefolder", data_dir=RUN_DIR)` from loading."""
    path = Path(out) if out is not None else run_dir / f"{EXPORT_STEM}.{fmt}"
    if path.name.lower() in DATASET_METADATA_NAMES and _inside(path, run_dir):
        raise UsageError(
            f"{path}: an export may not be named {path.name} inside the run directory "
            f"(the run's metadata.jsonl and data set loaders use that name); "
            f"leave out --out for {EXPORT_STEM}.{fmt}"
        )
    return path


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def export_rows(records: Iterable[JobRecord]) -> Iterator[dict[str, Any]]:
    """One row per file, and one with empty file fields for a job without files, in index order."""
    for rec in sorted(records, key=lambda r: r.index):
        for f in rec.files or [None]:
            yield export_row(rec, f)


def write_export(
    jobs: StateStore | Iterable[JobRecord], out_path: Path, fmt: str, marked: str | None = None
) -> int:
    """Write the rows as "csv" or "jsonl" atomically; returns how many rows were written.

    Given a StateStore, jobs are read a batch at a time (CSV reads them twice: once for the
    union of the columns, once for the rows), so memory stays flat however many jobs there are.
    `marked` (keep/reject): only the files of jobs so marked (no row for a job without files).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    out_path = Path(out_path)
    if isinstance(jobs, StateStore):
        store = jobs

        def rows() -> Iterator[dict[str, Any]]:
            recs = (r for r in store.iter_jobs() if marked is None or r.mark == marked)
            return (export_row(rec, f) for rec in recs for f in _files(rec, marked))
    else:
        kept = list(export_rows(r for r in jobs if marked is None or r.mark == marked))

        def rows() -> Iterator[dict[str, Any]]:
            return iter(kept)

    n = 0
    with atomic_text(out_path, newline="") as fh:
        if fmt == "csv":
            n = _write_csv(fh, columns(rows()), rows())
        else:
            for row in rows():
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                n += 1
    return n


def _files(rec: JobRecord, marked: str | None) -> list[FileRecord | None]:
    # a job without files has one row of its own, but a marked export is of files
    return list(rec.files) if rec.files or marked else [None]


def columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys: fixed columns, inputs, meta.*, vars.*, then file columns."""
    seen = dict.fromkeys(k for row in rows for k in row)
    middle = [k for k in seen if k not in RESERVED]
    middle.sort(key=lambda k: 1 if k.startswith("meta.") else 2 if k.startswith("vars.") else 0)
    lineage = [k for k in LINEAGE if k in seen]  # only where rows have them (pipelines, archive)
    archived = ["archived_from"] if "archived_from" in seen else []
    return [*HEAD, *lineage, *middle, *TAIL, *archived]


def export_row(
    rec: JobRecord, f: FileRecord | None, reserved: frozenset[str] = RESERVED
) -> dict[str, Any]:
    """The export row of one file (or of a job without files): CSV, JSONL and the parquet
    data set share it; `reserved` adds the names of columns a format puts beside it."""
    row: dict[str, Any] = {
        "file_name": f.file_name if f else None,
        "key": rec.key,
        "index": rec.index,
        "state": rec.state.value,
        "request_id": rec.request_ids[-1] if rec.request_ids else None,
        "model": rec.model,
        "media_type": media_type(f.file_name) if f else None,
    }
    if rec.stage is not None:  # as in metadata.jsonl: the three only for a pipeline's jobs
        row |= {"stage": rec.stage, "parent_key": rec.parent_key, "parent_file": rec.parent_file}
    for k, v in rec.inputs.items():
        # an input that shares a name with a fixed column must not overwrite it
        row[f"inputs.{k}" if k in reserved else k] = shown_input(v)
    row.update({f"meta.{k}": v for k, v in rec.meta.items()})
    row.update({f"vars.{k}": v for k, v in rec.vars.items()})
    row["sha256"] = f.sha256 if f else None
    row["bytes"] = f.bytes if f else None
    row["job_cost_usd"] = rec.cost_usd
    row["reason"] = rec.reason
    row["mark"] = rec.mark
    if rec.archived_from is not None:  # its files were taken from an --archive
        row["archived_from"] = rec.archived_from
    return row


def _write_csv(fh: Any, fieldnames: list[str], rows: Iterable[dict[str, Any]]) -> int:
    writer = csv.DictWriter(fh, fieldnames=fieldnames, restval="")
    writer.writeheader()
    n = 0
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
        n += 1
    return n


def _cell(value: Any) -> Any:
    # spreadsheets get lists and mappings as JSON text, missing values as empty cells
    if value is None:
        return ""
    if isinstance(value, bool | list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value
