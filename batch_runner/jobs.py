"""Jobs and their states; the allowed transitions are written down here and nowhere else."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from batch_runner import jsonenc

LOCAL_FILE = "local_file"  # the key of a local file input's reference (manifest/media.py)


class JobState(StrEnum):
    PENDING = "pending"
    SUBMITTING = "submitting"
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNCERTAIN = "uncertain"


S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # a submit that keeps being refused fails the job before it ever leaves `pending`
    # pending to pending: a job --max-cost leaves out is given the reason "budget"
    # pending to done: its files were taken from the --archive of an earlier run (never sent)
    S.PENDING: frozenset({S.PENDING, S.SUBMITTING, S.CANCELLED, S.FAILED, S.DONE}),
    # a lost submit answer makes the job uncertain; a clear refusal sends it back or fails it
    S.SUBMITTING: frozenset({S.QUEUED, S.RUNNING, S.PENDING, S.UNCERTAIN, S.FAILED}),
    S.QUEUED: frozenset({S.QUEUED, S.RUNNING, S.DOWNLOADING, S.PENDING, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.RUNNING, S.DOWNLOADING, S.PENDING, S.FAILED, S.CANCELLED, S.QUEUED}),
    # pending again: a restarted in-process simulator forgot the id (free to resubmit)
    S.DOWNLOADING: frozenset({S.DOWNLOADING, S.DONE, S.FAILED, S.PENDING}),
    S.UNCERTAIN: frozenset({S.SUBMITTING, S.PENDING, S.FAILED, S.UNCERTAIN}),
    S.DONE: frozenset({S.DOWNLOADING}),  # files found missing on resume are fetched again
    S.FAILED: frozenset({S.PENDING}),  # --retry-failed: a new round of attempts
    S.CANCELLED: frozenset(),
}


# no request the API knows the job by: its next step is a submit
WITHOUT_REQUEST = frozenset({S.PENDING, S.SUBMITTING, S.UNCERTAIN})
# the reason of a `queued` job that no poll has seen yet: the API took it, and whether it waits
# in its queue or already runs is not known (status shows it apart from jobs seen in_queue)
NOT_POLLED = "submitted; not polled yet"


class TransitionError(RuntimeError):
    """A move the table does not allow: a bug of ours, stopped before the state file lies."""


def can_move(old: JobState, new: JobState) -> bool:
    return new in TRANSITIONS[old]


def check_move(old: JobState, new: JobState, who: str = "a job") -> JobState:
    """`new`, if a job may go there from `old`: the one check every state change passes."""
    if not can_move(old, new):
        raise TransitionError(f"{who}: {old} → {new} is not a transition")
    return new


def current_request_id(state: JobState, request_ids: Sequence[str]) -> str | None:
    """The id the API knows the job by: its last attempt's, unless it waits for a submit."""
    return request_ids[-1] if request_ids and state not in WITHOUT_REQUEST else None


@dataclass(frozen=True)
class Location:
    """Where a job came from: manifest file and 1-based line (YAML/JSONL) or row (CSV)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class JobSpec:
    """One job after expansion: what is sent (`inputs`) and what is only kept (`meta`, `vars`)."""

    model: str
    inputs: dict[str, Any]
    copy: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    source: Location | None = None
    sweep: int | None = None  # index of the sweep entry it came from, if any

    @cached_property
    def key(self) -> str:
        """The job's identity (computed once: a spec's inputs are not changed after it is made)."""
        return job_key(self.model, self.inputs, self.copy)


def job_key(model: str, inputs: dict[str, Any], copy: int) -> str:
    """Stable hash of model path, final inputs and copy number (16 hex digits).

    A local file input (a reference, see manifest/media.py) counts by its content hash, not
    its path: moving the folder keeps the key, editing the file makes a new job."""
    blob = jsonenc.canonical([model, {k: _key_part(v) for k, v in inputs.items()}, copy])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _key_part(value: Any) -> Any:
    if isinstance(value, dict) and LOCAL_FILE in value:
        return {LOCAL_FILE: value.get("sha256")}
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [_key_part(v) for v in value]
    return value


def shown_input(value: Any) -> Any:
    """An input as people see it: a local file's path instead of its reference."""
    if isinstance(value, dict) and LOCAL_FILE in value:
        return value[LOCAL_FILE]
    if isinstance(value, list) and any(isinstance(v, dict | str) for v in value):
        return [shown_input(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > 100:
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        return f"{value.partition(',')[0]},… ({len(value)} characters, sha256 {digest}…)"
    return value


def input_files(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The local files a job's inputs name: field, path, sha256, bytes, media type."""
    out = []
    for name, value in inputs.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, dict) and LOCAL_FILE in v:
                out.append({"field": name, **{k: v.get(k) for k in _REF_KEYS}})
    return out


_REF_KEYS = (LOCAL_FILE, "sha256", "bytes", "media_type")


@dataclass(frozen=True)
class FileRecord:
    """One downloaded output file; `file_name` is relative to the run directory."""

    file_name: str  # e.g. "images/00001-a-red-fox.png"
    k: int  # 1-based number of the file within its job
    sha256: str
    bytes: int
    url: str | None = None


@dataclass
class JobRecord:
    """A job as the state file knows it (what status, report and export read)."""

    key: str
    index: int  # 1-based, stable across resumes
    model: str
    inputs: dict[str, Any]
    state: JobState
    copy: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    sweep: int | None = None
    source: str | None = None  # "file:line"
    reason: str | None = None  # why it failed / was cancelled / is uncertain
    request_ids: list[str] = field(default_factory=list)  # every attempt's id, oldest first
    attempts: int = 0
    files: list[FileRecord] = field(default_factory=list)
    in_manifest: bool = True
    model_id: str | None = None  # the model /result named for the current attempt
    estimate_usd: float | None = None  # the most this job may cost, None when unknown
    cost_usd: float | None = None  # what its current attempt cost, once the API said
    duplicates: int = 0  # submits sent again after a lost answer (each possibly paid twice)
    shard: str | None = None  # read by `merge` from this shard folder (shard-K-of-N)
    stage: str | None = None  # a pipeline's stage (store/lineage.py), None outside pipelines
    parent_key: str | None = None  # a later stage's job: the job it was made from
    parent_file: str | None = None  # … and that job's file (its file_name)
    archived_from: str | None = None  # the run directory its files were taken from (--archive)
    archived_request_id: str | None = None  # … and the request that made them there
    mark: str | None = None  # keep/reject, set from `serve` (store/marks.py)

    @property
    def request_id(self) -> str | None:
        """The current attempt's id (None while the job waits for a submit)."""
        return current_request_id(self.state, self.request_ids)

    @property
    def result_id(self) -> str | None:
        """The request whose /result lists its files: the current attempt's, or (its files
        taken from an archive) the one that made them in the archived run."""
        return self.archived_request_id if self.archived_from is not None else self.request_id

    def move(self, state: JobState, reason: str | None = None) -> None:
        """Change state, checked against TRANSITIONS (the caller records it in the state file)."""
        self.state = check_move(self.state, state, f"job {self.index}")
        self.reason = reason
