"""One data set over a run directory's shards: RUN_DIR/metadata.jsonl and RUN_DIR/report.html.

Nothing is copied: the merged lines name each file where its shard wrote it
(`shard-0-of-4/images/...`, relative to RUN_DIR), and a pipeline child's `parent_file` too
(a child lives in its parent's shard). Every shard's state file is read read-only
(SQLite WAL readers never block the shard writing it), so a merge is safe while shards run
(it shows what is done so far) and gives the same files when run again.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_runner import jsonenc
from batch_runner.errors import UsageError
from batch_runner.jobs import FileRecord, JobRecord
from batch_runner.money import usd
from batch_runner.outputs.files import atomic_text
from batch_runner.outputs.metadata import METADATA_FILE, metadata_line
from batch_runner.report.page import StoreSource, Totals, write_page
from batch_runner.shards import Shard, shard_dirs
from batch_runner.store.state import STATE_FILE, StateStore


@dataclass
class ShardRun:
    shard: Shard
    path: Path
    store: StateStore

    @property
    def name(self) -> str:
        return self.shard.name


@dataclass
class MergeResult:
    shards: int
    jobs: int
    lines: int
    metadata: Path
    report: Path
    waiting: list[str]  # shard folders without a state file yet


@contextlib.contextmanager
def open_shards(run_dir: Path) -> Iterator[tuple[list[ShardRun], list[str]]]:
    """The shards of `run_dir` opened read-only, and the names of those not started yet."""
    found = shard_dirs(run_dir)
    if not found:
        raise UsageError(f"{run_dir}: no shard-K-of-N folders here (nothing to merge)")
    counts = sorted({s.n for s, _ in found})
    if len(counts) > 1:
        raise UsageError(f"{run_dir}: holds shards of several counts ({counts}); merge one N")
    runs: list[ShardRun] = []
    waiting = [s.name for s, path in found if not (path / STATE_FILE).is_file()]
    try:
        for shard, path in found:
            if shard.name not in waiting:
                runs.append(ShardRun(shard, path, StateStore.open(path, readonly=True)))
        yield runs, waiting
    finally:
        for run in runs:
            run.store.close()


def merge(run_dir: Path) -> MergeResult:
    with open_shards(run_dir) as (runs, waiting):
        lines = write_metadata(run_dir, runs)
        report = write_page(run_dir, ShardsSource(runs), title=run_dir.name)
        jobs = sum(sum(run.store.counts().values()) for run in runs)
    return MergeResult(len(runs), jobs, lines, run_dir / METADATA_FILE, report, waiting)


def write_metadata(run_dir: Path, runs: list[ShardRun]) -> int:
    """RUN_DIR/metadata.jsonl: every shard's lines, file names relative to RUN_DIR
    (written to a temporary name, then renamed: a reader never sees half of it)."""
    n = 0
    with atomic_text(run_dir / METADATA_FILE, durable=True) as fh:
        for run in runs:
            elsewhere = _other_runs(run.store)
            for job in run.store.iter_jobs():
                rid = job.request_ids[-1] if job.request_ids else None
                if job.parent_file and job.stage not in elsewhere:  # in the same shard
                    job.parent_file = f"{run.name}/{job.parent_file}"
                for f in job.files:
                    line = metadata_line(job, _moved(f, run.name), rid)
                    fh.write(jsonenc.text(line) + "\n")
                    n += 1
    return n


def add_up(a: Any, b: Any) -> Any:
    """Two summaries added up (the shards' `status`, the merged report's totals): numbers
    summed (money to a millionth of a dollar), mappings key by key, lists joined; an unknown
    (None) figure counts as missing."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = add_up(out.get(key), value)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return usd(a + b) if isinstance(a + b, float) else a + b
    return a  # text and flags: the first shard's


def _other_runs(store: StateStore) -> set[str]:
    """The stages whose parents are in another run directory (`{run: DIR}`): their
    `parent_file` is relative to that directory, not to a shard."""
    plans = store.stage_plans() if store._has_lineage() else []
    return {p["name"] for p in plans if p.get("run")}


def _moved(f: FileRecord, folder: str) -> FileRecord:
    # built directly, not by dataclasses.replace: a fifth of a 100,000-job merge went there
    return FileRecord(f"{folder}/{f.file_name}", f.k, f.sha256, f.bytes, f.url)


def _in_shard(job: JobRecord, folder: str) -> JobRecord:
    job.files = [_moved(f, folder) for f in job.files]  # a fresh record, read for this page
    job.shard = folder  # the page names it `shard-K-of-N #I`: every shard has its own #1
    return job


class ShardsSource:
    """The jobs of every shard for the report, each sweep's jobs together (files by their
    path from RUN_DIR). Job numbers are each shard's own, as in its file names, so the page
    names each job with its shard (`shard-1-of-4 #3`)."""

    def __init__(self, runs: list[ShardRun]):
        self._runs = [(run.name, StoreSource(run.store)) for run in runs]

    def totals(self) -> Totals:
        parts = [source.totals() for _, source in self._runs]
        counts: Counter[str] = Counter()
        per_model: dict[str, tuple[int, float]] = {}
        for part in parts:
            counts.update(part.counts)
            for model, (jobs, spent) in (part.per_model or {}).items():
                was = per_model.get(model, (0, 0.0))
                per_model[model] = (was[0] + jobs, usd(was[1] + spent))
        money: dict[str, Any] = {}
        for p in parts:  # added up as `status` adds the shards' summaries
            money = add_up(money, dict(s=p.spent, e=p.estimated, x=p.possible_extra))
        return Totals(
            counts,
            sum(p.jobs for p in parts),
            sum(p.files for p in parts),
            sum(p.bytes for p in parts),
            money.get("s") or 0.0,
            money.get("e"),
            per_model,
            money.get("x"),
        )

    def sections(self) -> dict[int | None, int]:
        sizes: Counter[int | None] = Counter()
        for _, source in self._runs:
            sizes.update(source.sections())
        return dict(sizes)

    def iter_section(self, sweep: int | None) -> Iterator[JobRecord]:
        for name, source in self._runs:
            if sweep in source.sections():
                for job in source.iter_section(sweep):
                    yield _in_shard(job, name)

    def first_of(self, sweep: int | None) -> JobRecord:
        return next(self.iter_section(sweep))

    # a pipeline's reads (report/chains.py): each chain is in one shard (children are made by
    # their parent's shard), and keys are unique across shards
    def stages(self) -> list[str]:
        return list(dict.fromkeys(s for _, source in self._runs for s in source.stages()))

    def stage_sections(self) -> dict[tuple[str | None, int | None], int]:
        sizes: Counter[tuple[str | None, int | None]] = Counter()
        for _, source in self._runs:
            sizes.update(source.stage_sections())
        return dict(sizes)

    def iter_stage_section(self, stage: str | None, sweep: int | None) -> Iterator[JobRecord]:
        for name, source in self._runs:
            for job in source.iter_stage_section(stage, sweep):
                yield _in_shard(job, name)

    def chain_roots(self) -> Iterator[JobRecord]:
        for name, source in self._runs:
            for job in source.chain_roots():
                yield _in_shard(job, name)

    def children_of(self, keys: list[str]) -> list[JobRecord]:
        return [_in_shard(j, name) for name, source in self._runs for j in source.children_of(keys)]
