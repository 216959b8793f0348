"""`{run: DIR}` at run time (CONTRACT §3 Pipelines; the manifest side: manifest/run_axis.py):
the other run directory's done jobs are the parents, read from its state file opened
read-only (never written).

Its children are made before the first submit, by the same code as a `{from:}` child's
(run/children.py: keys from the parent's key, the template and the file's position, so a
re-run or a resume makes none twice), and a refused URL is refreshed from the parent's
`/result` in the other run, or its file there sent inline (run/parent_urls.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_runner.errors import StateError
from batch_runner.jobs import JobRecord, JobState
from batch_runner.manifest.run_axis import ReadRun, RunFile
from batch_runner.outputs.metadata import media_type
from batch_runner.shards import shard_of
from batch_runner.store.state import STATE_FILE, StateStore

if TYPE_CHECKING:
    from batch_runner.run.children import Children


def finished_files(run_dir: Path) -> list[RunFile] | str:
    """The files of another run directory's done jobs (manifest/run_axis.py ReadRun), or why
    they cannot be read."""
    if not (run_dir / STATE_FILE).is_file():
        what = "no such directory" if not run_dir.exists() else f"no {STATE_FILE} in it"
        return f"{{run: {run_dir}}}: not a run directory ({what})"
    try:
        with StateStore.open(run_dir, readonly=True) as store:
            return [
                RunFile(job.key, f.k, f.file_name, media_type(f.file_name))
                for job in _done(store)
                for f in job.files
            ]
    except StateError as exc:
        return f"{{run: {run_dir}}}: {exc}"


def reader(out: Path | None) -> ReadRun:
    """`finished_files` for a run writing to `out`: its own directory (or a shard of it) is
    refused, so no run takes its own outputs."""

    def read(run_dir: Path) -> list[RunFile] | str:
        mine = out is not None and (run_dir == out.resolve() or out.resolve() in run_dir.parents)
        if mine:
            return (
                f"{{run: {run_dir}}}: this is the run's own directory (--out): a run cannot take "
                "its own outputs (give the directory of another run)"
            )
        return finished_files(run_dir)

    return read


def catch_up(children: Children) -> int:
    """The children of every `{run:}` stage not made yet (made now; none twice). Returns how
    many keys were written."""
    made = 0
    for plan in children.plans:
        if not plan.get("run"):
            continue
        k, n = plan.get("shard") or (0, 1)  # a shard makes the children of its parents only
        try:
            with StateStore.open(Path(plan["run"]), readonly=True) as other:
                for parent in _done(other):
                    if n > 1 and shard_of(parent.key, n) != k:
                        continue
                    for row in children.rows(plan, parent, parent.files):
                        children.store.add_child(row)
                        made += 1
        except StateError as exc:  # a resume after the other run directory was moved
            raise StateError(f"stage {plan['name']}: {{run: {plan['run']}}}: {exc}") from None
    return made


def parent_in_run(run_dir: Path, key: str) -> JobRecord | None:
    """A parent job of another run directory, with its files (None: not there)."""
    try:
        with StateStore.open(run_dir, readonly=True) as store:
            return store.job_by_key(key, with_files=True)
    except StateError:
        return None


def _done(store: StateStore) -> Iterator[JobRecord]:
    return (job for job in store.iter_jobs(with_files=True) if job.state is JobState.DONE)


def run_of(plans: list[dict[str, Any]], stage: str | None) -> Path | None:
    """The other run directory a stage's children come from (None: not a `{run:}` stage)."""
    for plan in plans:
        if plan["name"] == stage and plan.get("run"):
            return Path(plan["run"])
    return None
