"""Checks on `meta` fields, which become columns of metadata.jsonl and so of the data set that
`load_dataset("imagefolder", data_dir=RUN_DIR)` builds: a name that a loader or our own line
already uses is refused, and so is a field whose type changes from job to job (a column has
one type)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from batch_runner.errors import Problem
from batch_runner.jobs import JobSpec, Location

# the columns `datasets` folder loaders make or read (file_name links a file; image, video,
# audio and label are the columns they add) and the fields of our own metadata.jsonl lines
LOADER_COLUMNS = frozenset(
    ["file_name", "file_names", "image", "images", "video", "videos", "audio", "audios", "label"]
)
LINE_FIELDS = frozenset(
    ["key", "index", "k", "request_id", "model", "meta", "vars", "sha256", "bytes"]
    + ["media_type", "job_cost_usd", "mark"]
)
RESERVED = LOADER_COLUMNS | LINE_FIELDS


def meta_problems(jobs: Iterable[JobSpec]) -> list[Problem]:
    """Reserved meta names (once per name and line) and meta types that differ between jobs
    (once per field)."""
    check = MetaCheck()
    for job in jobs:
        check.job(job)
    return list(check.found.values())


class MetaCheck:
    """meta_problems one job at a time (what it keeps grows with fields, not jobs)."""

    def __init__(self) -> None:
        self.found: dict[tuple | str, Problem] = {}
        self.first: dict[str, tuple[str, Location]] = {}  # field -> (kind, where first seen)

    def job(self, job: JobSpec) -> None:
        if not job.meta:
            return
        problems, loc = self.found, job.source or Location("<jobs>")
        for name, value in job.meta.items():
            why = _name_problem(name, job.inputs)
            if why:
                problems.setdefault((loc, name), Problem(loc.file, loc.line, f"meta.{name}", why))
            kind = _kind(value)
            if kind is None:
                continue
            seen = self.first.setdefault(name, (kind, loc))
            if seen[0] != kind and name not in problems:
                problems[name] = Problem(loc.file, loc.line, f"meta.{name}", _mixed(kind, seen))


def _name_problem(name: str, inputs: dict[str, Any]) -> str | None:
    if not name.strip():
        return "a meta field needs a name (a column of metadata.jsonl without one breaks loaders)"
    if name in RESERVED or name.endswith(("_file_name", "_file_names")):
        return (
            f"'{name}' is a reserved column name of metadata.jsonl and data set loaders "
            "(file_name, *_file_name, image, video, audio, label, key, index, ...): rename it"
        )
    if name in inputs:
        return f"'{name}' is also an input of this job; a meta field needs a name of its own"
    return None


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping"


def _mixed(kind: str, seen: tuple[str, Location]) -> str:
    where = f"line {seen[1].line}" if seen[1].line is not None else str(seen[1])
    return (
        f"is a {kind} here but a {seen[0]} at {where}: a metadata column has one type "
        "(quote numbers to make them all strings)"
    )
