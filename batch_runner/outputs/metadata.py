"""metadata.jsonl (one line per downloaded file, exactly once) and the text embedded in images."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from batch_runner import jsonenc
from batch_runner.jobs import FileRecord, JobRecord, input_files, shown_input
from batch_runner.outputs.files import atomic_text
from batch_runner.outputs.media import FOLDERS, KINDS
from batch_runner.shards import is_shard_dir

METADATA_FILE = "metadata.jsonl"
# a shard's own lines: named apart, so the data set loader finds only the merged metadata.jsonl
# of RUN_DIR (with both, `imagefolder` would yield every file twice)
SHARD_METADATA_FILE = "shard-metadata.jsonl"
OUTPUT_DIRS = tuple(FOLDERS.values())  # images/, videos/, audio/ (CONTRACT §4)


def media_type(file_name: str) -> str:
    """image, video or audio: from the extension, which follows the file's sniffed content
    (files of runs from before turn 2 are images, or MP4/WebM videos under images/)."""
    return KINDS.get(file_name.rsplit(".", 1)[-1].lower(), "image")


def metadata_path(run_dir: Path) -> Path:
    """Where a run directory keeps its metadata lines (a shard's are merged by `merge`)."""
    return run_dir / (SHARD_METADATA_FILE if is_shard_dir(run_dir) else METADATA_FILE)


def metadata_line(job: JobRecord, f: FileRecord, request_id: str | None) -> dict[str, Any]:
    """The metadata.jsonl object of one file (CONTRACT §4); `file_name` is relative to RUN_DIR."""
    line: dict[str, Any] = {
        "file_name": f.file_name,
        "key": job.key,
        "index": job.index,
        "k": f.k,
        "request_id": request_id,
        "model": job.model,
        "media_type": media_type(f.file_name),
    }
    if job.model_id is not None:
        line["model_id"] = job.model_id  # as /result named it
    if job.stage is not None:  # a pipeline's lineage (CONTRACT §4)
        line |= {"stage": job.stage, "parent_key": job.parent_key, "parent_file": job.parent_file}
    for name, value in job.inputs.items():
        line.setdefault(name, shown_input(value))  # a local file by its path, never its data
    inputs = input_files(job.inputs)
    if inputs:
        line["input_files"] = inputs
    for name, value in job.meta.items():
        line.setdefault(name, value)  # top level, so imagefolder shows them as columns
    if job.meta:
        line["meta"] = job.meta
    if job.vars:
        line["vars"] = job.vars
    line["sha256"] = f.sha256
    line["bytes"] = f.bytes
    line["job_cost_usd"] = job.cost_usd  # the whole job's, on each of its files (CONTRACT §4)
    return line


class MetadataLog:
    """Appends lines to metadata.jsonl through one open handle, flushed once per loop tick
    (at once outside an event loop), so readers see each line within a tick of its file.

    No fsync: the file is derived; a line lost in a crash makes its line count disagree with
    the state, and it is rebuilt from the state on the next start.
    """

    def __init__(self, run_dir: Path):
        self.path = metadata_path(run_dir)
        self._fh: TextIO | None = None
        self._flush_soon: asyncio.Handle | None = None

    def append(self, line: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._fh.write(jsonenc.text(line) + "\n")
        if self._flush_soon is None:
            try:
                self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no event loop: flush now
                self._fh.flush()

    def _flush(self) -> None:
        self._flush_soon = None
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def count_metadata_lines(run_dir: Path) -> int:
    path = metadata_path(run_dir)
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def rebuild_metadata(run_dir: Path, jobs: Iterable[JobRecord]) -> int:
    """Rewrite metadata.jsonl from the state (atomically); returns the number of lines."""
    n = 0
    with atomic_text(metadata_path(run_dir), durable=True) as fh:
        for job in jobs:
            rid = job.request_ids[-1] if job.request_ids else None
            for f in job.files:
                fh.write(jsonenc.text(metadata_line(job, f, rid)) + "\n")
                n += 1
    return n


def parameters_text(model: str, inputs: dict[str, Any]) -> str:
    """Prompt and settings in the `parameters` convention image tools read (prompt, then k: v)."""
    rest = ", ".join(f"{k}: {shown_input(v)}" for k, v in inputs.items() if k != "prompt")
    prompt = str(inputs.get("prompt", ""))
    return f"{prompt}\nModel: {model}" + (f", {rest}" if rest else "")
