"""A child's input URL that no longer works (CONTRACT §3 Pipelines): refreshed from its
parent's `/result`, else the parent's local file sent inline, else the child fails saying why.

The rule: a child is sent its parent's output URL as the API returned it. When the API refuses
the child's submit with 422001 naming the `{from:}` field, that URL is dead: the parent's
`/result` is asked again for fresh URLs, the child's input (and the parent's file row, so later
children start fresh) takes the new one, and the child is sent again. A URL once refused is
never sent again: siblings made from the same parent file get its replacement before their
first submit. Only when the parent's request itself is gone (404001) is the parent's
downloaded file put in the field as a local file reference (sent inline like any local input,
within --max-inline-mb, recorded by path and sha256). A refreshed URL refused again, a parent
file gone or too big, or a /result that cannot be had: the child fails with that reason.

A child made of a parent file whose URL was never kept (taken from an archive written before
URLs were, or downloaded before they were) has a null there; before its first submit the
URL is asked from the parent's `/result` (a parent taken from an archive: the request that
made its files in the archived run) the same way, and without a request id at all its file
is sent inline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch_runner.errors import ApiError
from batch_runner.jobs import FileRecord, JobRecord
from batch_runner.manifest.media import Limits, file_facts, file_ref
from batch_runner.run.run_axis import parent_in_run
from batch_runner.store.state import StateStore

REQUEST_GONE = 404001  # the API forgot the parent's request: its URLs cannot be refreshed
INVALID_INPUTS = 422001
MAX_REFRESHES = 3  # per child: a URL that dies again each time is not chased forever


# a child's field -> the job and file its value was made from (run/children.py Children.source)
Source = Callable[[JobRecord, str], tuple[JobRecord | None, FileRecord | None]]


class DeadInput(Exception):
    """The child's media input cannot be made to work; the message says why."""


def names_field(exc: ApiError, field: str) -> bool:
    """Whether a refused submit blames this field: 422001 whose detail (in the message as
    `body.FIELD...: msg`, api/answers.py) names it."""
    if exc.error_code != INVALID_INPUTS and exc.status != 422:
        return False
    text = exc.message or ""
    return f"body.{field}:" in text or f"body.{field}." in text


class ParentUrls:
    """Dead parent URLs and what replaced them, for one run."""

    def __init__(
        self,
        store: StateStore,
        client: Any,
        run_dir: Path,
        max_inline_mb: float,
        others: Callable[[JobRecord], Path | None] | None = None,
    ):
        self.store = store
        # a `{run: DIR}` child's parent is in another run directory (run/run_axis.py): read
        # there, never written
        self.others = others
        self.client = client
        self.run_dir = run_dir
        self.limits = Limits.of(max_inline_mb, None)
        self.replaced: dict[str, Any] = {}  # a dead URL -> its fresh URL or a file reference
        self.tries: dict[tuple[int, str], int] = {}  # refreshes asked by each child's field
        self.filled: dict[tuple[str, int], Any] = {}  # (parent key, k) -> its URL asked for

    def known(self, job: JobRecord, field: str) -> bool:
        """Before a first submit: a URL already known dead is replaced (True when it was)."""
        value = job.inputs.get(field)
        new = _swap(value, self.replaced)
        if new == value:
            return False
        self._set(job, field, new)
        return True

    async def replace(self, job: JobRecord, field: str, why: str, source: Source) -> None:
        """The child's `field` was refused (`why`): put a working value in its place, or
        raise DeadInput. The caller sends the job again. `source` finds the job and file the
        field was made from (the parent's, or an ancestor's with several `{from:}` fields)."""
        value = job.inputs.get(field)
        urls = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
        if not urls:
            raise DeadInput(f"the parent's file sent inline was refused ({why})")
        if all(u in self.replaced for u in urls):  # a sibling found it dead and replaced it
            self._set(job, field, _swap(value, self.replaced))
            return
        self.tries[job.index, field] = tries = self.tries.get((job.index, field), 0) + 1
        if tries > MAX_REFRESHES:
            raise DeadInput(f"the parent's URL was refused {tries} times, refreshed ({why})")
        other = self.others(job) if self.others is not None else None
        parent, mine = source(job, field) if other is None else _in_run(other, job)
        if parent is None or mine is None:
            raise DeadInput(f"its URL was refused ({why}) and the parent's file is not known")
        new = await self._fresh(parent, mine, f"its input URL was refused ({why})", other)
        for u in urls:
            self.replaced[u] = new
        self._set(job, field, _swap(value, self.replaced))

    async def fill(self, job: JobRecord, field: str, source: Source) -> None:
        """Before a first submit: a field made without its parent's URL (null: the parent's
        files came from an archive, or were downloaded, before URLs were kept) gets one from
        the parent's /result, else the parent's file inline; DeadInput when neither works."""
        value = job.inputs.get(field)
        if not _unknown(value):
            return
        lead = "its parent's file URL was not kept"
        other = self.others(job) if self.others is not None else None
        parent, mine = source(job, field) if other is None else _in_run(other, job)
        if parent is None or mine is None:
            raise DeadInput(f"{lead} and the parent's file is not known")
        new = mine.url or self.filled.get((parent.key, mine.k))  # a sibling's, meanwhile
        if new is None:
            new = await self._fresh(parent, mine, lead, other)
            self.filled[parent.key, mine.k] = new
        self._set(job, field, [new] if isinstance(value, list) else new)

    async def _fresh(
        self, parent: JobRecord, mine: FileRecord, lead: str, other: Path | None
    ) -> Any:
        """The parent file's URL from the parent's /result, or the file sent inline when that
        request is gone (or, taken from an archive that kept none, not known). `other`: the
        run directory a `{run:}` child's parent is in (None: this one)."""
        run_dir = other or self.run_dir
        if parent.result_id is None:
            why = f"{lead}, the parent's request id was not kept either"
            return self._inline(mine, run_dir, why)
        try:
            poll = await self.client.result(parent.result_id)
        except ApiError as exc:
            if exc.error_code == REQUEST_GONE:
                return self._inline(mine, run_dir, "the parent's request is gone (404001)")
            raise DeadInput(
                f"{lead} and the parent's result could not be asked again ({exc.message})"
            ) from None
        if poll.status != "completed" or len(poll.outputs) < mine.k:
            said = poll.raw_status or poll.status
            raise DeadInput(f"{lead}; the parent's result says {said}")
        fresh = poll.outputs[mine.k - 1]
        if other is None:  # another run's state file is never written
            self.store.set_file_url(parent.index, mine.k, fresh)
        return fresh

    def _inline(self, mine: FileRecord, run_dir: Path, why: str) -> dict[str, Any]:
        """The parent's downloaded file as a local file reference (sent inline)."""
        path = run_dir / mine.file_name
        facts = file_facts(path, self.limits)
        gone = f"{why} and its file {mine.file_name}"
        if isinstance(facts, str):
            raise DeadInput(f"{gone} cannot be sent inline: {facts}")
        if facts.sha256 != mine.sha256:
            raise DeadInput(f"{gone} changed since it was downloaded (its sha256 differs)")
        return file_ref(path, facts)

    def _set(self, job: JobRecord, field: str, value: Any) -> None:
        job.inputs = {**job.inputs, field: value}
        self.store.set_inputs(job.index, job.inputs)


def _unknown(value: Any) -> bool:
    """A field made without its parent's URL: null (a one-item list of null for a list)."""
    return value is None or (isinstance(value, list) and None in value)


def _swap(value: Any, replaced: dict[str, Any]) -> Any:
    """`value` with each dead URL replaced by its latest replacement (which may have died and
    been replaced in turn)."""
    if isinstance(value, list):
        return [_swap(v, replaced) for v in value]
    seen = 0
    while isinstance(value, str) and value in replaced and seen < len(replaced):
        value, seen = replaced[value], seen + 1
    return value


def _in_run(run_dir: Path, job: JobRecord) -> tuple[JobRecord | None, FileRecord | None]:
    """A `{run:}` child's parent and file, in the other run directory (read, never written)."""
    parent = parent_in_run(run_dir, job.parent_key or "")
    mine = parent and next((f for f in parent.files if f.file_name == job.parent_file), None)
    return parent, mine
