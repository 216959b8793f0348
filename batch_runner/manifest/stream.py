"""The one seam between a manifest of any size and its callers: a manifest's checked jobs are
a list when there are few (up to STREAM_ABOVE), else a JobStream that makes them again, in
the same order, each time it is iterated. `validate` and `run --shard K/N` only iterate, so a
million jobs are never held at once (a shard keeps only its own); callers that need every
job at hand (a pilot's pick, a preview) read what they need from either."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, overload

from batch_runner.jobs import JobSpec

Select = Callable[[JobSpec], bool]
STREAM_ABOVE = 20_000  # jobs: a list up to this many (as fast, and simplest for every caller)


class JobStream:
    """A re-iterable sequence of jobs: `make()` gives one pass over them; len() is known."""

    def __init__(
        self,
        make: Callable[[], Iterator[JobSpec]],
        count: int,
        models: dict[str, int],
        selected: tuple[Select, list[JobSpec]] | None = None,
    ):
        self._make = make
        self.count = count
        self.models = models  # jobs per model, in first-use order
        self._selected = selected  # the jobs a predicate kept during the checking pass

    def select(self, keep: Select) -> list[JobSpec]:
        """The jobs `keep` holds, in order: those kept while the jobs were checked when it is
        the same predicate (`run --shard K/N`: no second pass), else one pass."""
        if self._selected is not None and self._selected[0] == keep:
            return self._selected[1]
        return [job for job in self if keep(job)]

    def __iter__(self) -> Iterator[JobSpec]:
        return self._make()

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> JobSpec: ...
    @overload
    def __getitem__(self, index: slice) -> list[JobSpec]: ...

    def __getitem__(self, index: Any) -> Any:
        """A job or a slice of them, read by a pass as far as they go (for previews)."""
        if isinstance(index, slice):
            start, stop, step = index.indices(self.count)
            return list(itertools.islice(self, start, stop, step))
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError("job index out of range")
        return next(itertools.islice(self, index, None))


def select(jobs: list[JobSpec] | JobStream, keep: Select) -> list[JobSpec]:
    """The jobs `keep` holds, in order, from a list or a JobStream."""
    if isinstance(jobs, JobStream):
        return jobs.select(keep)
    return [job for job in jobs if keep(job)]
