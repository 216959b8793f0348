"""Marks into the files a run directory is read through: metadata.jsonl's `mark` (and the
cards of report.html) once marks changed, by whoever holds the run directory: `serve` when no
run does, else the run when it ends. Rewriting metadata.jsonl under a live run would cut off
the lines it appends, hence the lock."""

from __future__ import annotations

from pathlib import Path

from batch_runner.outputs.metadata import rebuild_metadata
from batch_runner.store.marks import note_written
from batch_runner.store.state import StateStore


def write_marks(run_dir: Path, store: StateStore, *, report: bool = True) -> bool:
    """Rewrite metadata.jsonl (and `report`: report.html) when the marks changed since they
    were last written; True when it did. The caller holds the run directory's lock."""
    last = store.unwritten_marks()
    if last is None:
        return False
    rebuild_metadata(run_dir, store.iter_jobs())
    if report:
        from batch_runner.report.page import write_report

        write_report(run_dir, store, title=run_dir.name)
    note_written(store.path, last)
    return True
