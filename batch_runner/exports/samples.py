"""The samples of a run directory: one per output file (as metadata.jsonl has one line per
file), in job order, shard by shard for a folder of shards; and the counts of what was
exported and what was not (`Tally`, written to a webdataset's `_stats.json`).

The state is read a batch of jobs at a time (`StateStore.iter_jobs`), read-only, so an export
may run beside a live run (it exports what is done so far); a sample's bytes are opened only
when a writer asks for them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from batch_runner.errors import StateError
from batch_runner.jobs import FileRecord, JobRecord
from batch_runner.outputs.metadata import media_type, metadata_line
from batch_runner.report.export import export_row
from batch_runner.report.merge import open_shards
from batch_runner.shards import shard_dirs
from batch_runner.store.state import STATE_FILE, StateStore


@dataclass(frozen=True)
class Sample:
    """One output file with its job. `file.file_name` is relative to the exported folder
    (a shard's files under `shard-K-of-N/`, as in the merged metadata.jsonl)."""

    job: JobRecord
    file: FileRecord
    path: Path  # where the bytes are on disk
    key: str  # unique in the export, without dots: webdataset's key ends at the first dot

    @property
    def ext(self) -> str:
        return self.file.file_name.rsplit(".", 1)[-1].lower()

    @property
    def media_type(self) -> str:
        return media_type(self.file.file_name)

    def line(self) -> dict[str, Any]:
        """Its metadata.jsonl line (CONTRACT §4)."""
        job = self.job
        return metadata_line(job, self.file, job.request_ids[-1] if job.request_ids else None)

    def row(self, reserved: frozenset[str]) -> dict[str, Any]:
        """Its row of the CSV/JSONL export (`reserved`: the names a format adds beside it)."""
        return export_row(self.job, self.file, reserved)

    def open(self) -> BinaryIO:
        try:
            return open(self.path, "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise StateError(
                f"{self.path}: job {self.job.index} ({self.job.key}) lists this file but it is "
                "not on disk (moved or deleted?); nothing was exported"
            ) from None

    def read(self) -> bytes:
        with self.open() as fh:
            return fh.read()


@dataclass
class Tally:
    """What an export holds, and the jobs it leaves out (no file: failed, not finished)."""

    samples: int = 0
    bytes: int = 0
    models: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    not_exported: Counter[str] = field(default_factory=Counter)  # jobs without files, by state
    waiting: list[str] = field(default_factory=list)  # shard folders without a state file yet
    marked: str | None = None  # `export --marked`: only the files of jobs so marked ...
    not_marked: int = 0  # ... and the jobs with files left out for it

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.bytes += sample.file.bytes
        self.models[sample.job.model] += 1
        stage = _stage(sample.job)
        if stage is not None:
            self.stages[stage] += 1

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "samples": self.samples,
            "bytes": self.bytes,
            "models": dict(sorted(self.models.items())),
            "not_exported": dict(sorted(self.not_exported.items())),
        }
        if self.stages:
            out["stages"] = dict(sorted(self.stages.items()))
        if self.waiting:
            out["shards_not_started"] = self.waiting
        if self.marked is not None:
            out["marked"] = self.marked
            out["not_marked"] = self.not_marked
        return out


def _stage(job: JobRecord) -> str | None:
    # pipelines give jobs a stage; runs (and branches) without them have none
    return getattr(job, "stage", None)


class RunSamples:
    """The samples of one run directory, or of every shard of a folder of shards."""

    def __init__(
        self,
        run_dir: Path,
        parts: list[tuple[str | None, StateStore]],
        marked: str | None = None,
    ):
        self.run_dir = run_dir
        self._parts = parts  # (shard folder name or None, its state), in shard order
        self.marked = marked  # keep/reject: only the files of jobs so marked

    def samples(self, tally: Tally | None = None) -> Iterator[Sample]:
        """Every file in order (shard, job index, file number); counted into `tally`."""
        for folder, store in self._parts:
            for job in store.iter_jobs():
                if not job.files and tally is not None:
                    tally.not_exported[job.state.value] += 1
                if self.marked is not None and job.mark != self.marked:
                    if job.files and tally is not None:
                        tally.not_marked += 1
                    continue
                for f in job.files:
                    sample = _sample(self.run_dir, folder, job, f)
                    if tally is not None:
                        tally.add(sample)
                    yield sample


def _sample(run_dir: Path, folder: str | None, job: JobRecord, f: FileRecord) -> Sample:
    key = f"{job.index:05d}_{f.k}"
    if folder is None:
        return Sample(job, f, run_dir / f.file_name, key)
    moved = FileRecord(f"{folder}/{f.file_name}", f.k, f.sha256, f.bytes, f.url)
    return Sample(job, moved, run_dir / moved.file_name, f"{folder}_{key}")


@contextlib.contextmanager
def open_samples(run_dir: Path, marked: str | None = None) -> Iterator[tuple[RunSamples, Tally]]:
    """The samples of `run_dir` (a run directory, or a folder of `shard-K-of-N/` runs), its
    state files opened read-only, and a fresh tally that lists the shards not started yet;
    `marked` (keep/reject): only the files of jobs so marked."""
    if (run_dir / STATE_FILE).is_file() or not shard_dirs(run_dir):
        if not (run_dir / STATE_FILE).is_file():
            raise StateError(f"{run_dir}: no state file here ({STATE_FILE} is missing)")
        store = StateStore.open(run_dir, readonly=True)
        try:
            yield RunSamples(run_dir, [(None, store)], marked), Tally(marked=marked)
        finally:
            store.close()
        return
    with open_shards(run_dir) as (runs, waiting):
        parts: list[tuple[str | None, StateStore]] = [(run.name, run.store) for run in runs]
        yield RunSamples(run_dir, parts, marked), Tally(waiting=waiting, marked=marked)
