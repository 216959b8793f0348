"""The parent files each child of a done parent job is made of (CONTRACT §3 Pipelines), for a
stage with one `{from:}` field or several (manifest/stage_sources.py has the rules).

A *pick* is one field's file: the field, the job whose file it is (the parent, or an ancestor
along the chain) and the file. The children of one parent and template are the product of
each field's picks; a child's key derives from the parent's key, the template's and the file
position of every field (never the URLs, which a refresh changes), so it is made once.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from batch_runner.jobs import FileRecord, JobRecord
from batch_runner.outputs.metadata import media_type

JobByKey = Callable[[str], JobRecord | None]  # a job with its files, by key


@dataclass(frozen=True)
class Pick:
    field: str
    job: JobRecord
    file: FileRecord


def child_key(parent_key: str, template_key: str, k: int, more: tuple[Pick, ...] = ()) -> str:
    """A child's identity: its parent, its template, the parent file's position and (with
    several `{from:}` fields) the position of every other field's file."""
    blob = f"{parent_key}/{template_key}/{k}"
    if more:
        blob += "/" + ",".join(f"{p.field}={p.job.key}:{p.file.k}" for p in more)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def picks(
    plan: Mapping[str, Any], parent: JobRecord, files: list[FileRecord], job_by_key: JobByKey
) -> Iterator[tuple[Pick, tuple[Pick, ...]]]:
    """(the first field's pick, the other fields' picks) of every child set of `parent`."""
    main = [Pick(plan["field"], parent, f) for f in _of_kind(files, plan)]
    axes = [_choices(extra, parent, files, job_by_key) for extra in plan.get("also") or ()]
    for first in main:
        for more in itertools.product(*axes):
            yield first, more


def _choices(
    extra: Mapping[str, Any], parent: JobRecord, files: list[FileRecord], job_by_key: JobByKey
) -> list[Pick]:
    if extra["stage"] == parent.stage:
        return [Pick(extra["field"], parent, f) for f in _of_kind(files, extra)]
    below, job = parent, _up(parent, job_by_key)
    while job is not None and job.stage != extra["stage"]:
        below, job = job, _up(job, job_by_key)
    if job is None:  # the chain starts in another run directory: no ancestor here
        return []
    mine = _of_kind(job.files, extra)
    if extra.get("along") and not extra.get("first"):  # the file the chain came from
        mine = [f for f in mine if f.file_name == below.parent_file]
    return [Pick(extra["field"], job, f) for f in mine]


def _up(job: JobRecord, job_by_key: JobByKey) -> JobRecord | None:
    return job_by_key(job.parent_key) if job.parent_key else None


def _of_kind(files: list[FileRecord], field: Mapping[str, Any]) -> list[FileRecord]:
    """A job's files of the field's media kind, in order (only the first with first: true)."""
    kind = field.get("kind")
    chosen = [f for f in sorted(files, key=lambda f: f.k) if kind is None or _kind(f) == kind]
    return chosen[:1] if field.get("first") else chosen


def _kind(f: FileRecord) -> str:
    return media_type(f.file_name)
