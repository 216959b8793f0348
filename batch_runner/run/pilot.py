"""`--pilot N`: which N of the new jobs a pilot run sends (the one decision, for `run` and
`validate` alike), and the table of what they cover.

The pick covers every model and every value of every axis of every sweep (its vars, variants
and wildcards included, and each input its list sweeps) at least once when N allows: a greedy
cover (each next job the one covering most values not yet covered), ties and the jobs left over
broken by a seeded hash of each job's key, so the same jobs and N always give the same pick
whatever order they come in. The rest stay `pending` for a later run without `--pilot`.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from batch_runner import jsonenc
from batch_runner.jobs import JobState, shown_input
from batch_runner.words import plural

if TYPE_CHECKING:
    from batch_runner.run.runner import RunResult
    from batch_runner.store.state import StateStore

Axis = tuple[int | None, str]  # (sweep index or None for the model, name)


class PilotJob(Protocol):
    key: str
    model: str
    inputs: dict[str, Any]
    vars: dict[str, Any]
    sweep: int | None
    source: Any


@dataclass(frozen=True)
class Pilot:
    """The jobs picked (their positions in the list given, ascending) and what they cover:
    each axis with its values in first-seen order and the values the pick covers."""

    picked: list[int]
    axes: dict[Axis, list[str]]
    covered: dict[Axis, set[str]]
    labels: dict[Axis, str]
    of: int  # how many jobs it was picked from

    def table(self) -> list[str]:
        """The lines printed before sending: `axis  covered/all  values`."""
        head = (
            f"pilot: {plural(len(self.picked), 'job')} of {self.of} new "
            f"(the other {self.of - len(self.picked)} stay pending)"
        )
        width = max((len(label) for label in self.labels.values()), default=0)
        lines = [head]
        for axis, values in self.axes.items():
            seen = [v for v in values if v in self.covered[axis]]
            shown = ", ".join(_short(v) for v in seen[:6]) + (", …" if len(seen) > 6 else "")
            lines.append(
                f"  {self.labels[axis]:<{width}}  {len(seen)}/{len(values)} covered: {shown}"
            )
        return lines


def hold_back(store: StateStore, n: int | None, seed: Any, say: Callable[[str], None]) -> set[int]:
    """The new jobs (never submitted) a run with `--pilot N` leaves pending, by index; the
    table of the pick is said first. Without --pilot: none."""
    if n is None:
        return set()
    new = [
        job
        for job in store.iter_jobs(with_files=False)
        if job.state is JobState.PENDING and job.attempts == 0
    ]
    chosen = pick(new, n, seed)
    for line in chosen.table():
        say(line)
    picked = set(chosen.picked)
    return {job.index for i, job in enumerate(new) if i not in picked}


def pilot_result(result: RunResult, held: set[int]) -> RunResult:
    """A pilot whose own jobs all finished well ends with exit 0: the jobs it held back are
    pending by request, not left over (the summary says how many, `pilot_pending`)."""
    if not held:
        return result
    result.summary["pilot_pending"] = len(held)
    counts = result.summary["counts"]
    unfinished = any(counts.get(s, 0) for s in ("failed", "cancelled", "uncertain"))
    if result.exit_code == 1 and not unfinished and counts.get("pending", 0) <= len(held):
        result.exit_code = 0
    return result


def pick(jobs: Sequence[PilotJob], n: int, seed: Any = 0) -> Pilot:
    """N of `jobs` covering every model and axis value when N allows (see the module)."""
    axes, labels = _axes(jobs)
    values = [_values(job, axes) for job in jobs]
    rank = [_rank(seed, job.key) for job in jobs]
    chosen: list[int] = []
    uncovered = set().union(*values) if values else set()
    # lazy greedy: a job's gain only falls as others are picked, so a popped job whose gain is
    # still what it was pushed with is the best there is
    heap = [(-len(v), rank[i], i) for i, v in enumerate(values)]
    heapq.heapify(heap)
    while heap and uncovered and len(chosen) < n:
        gain, r, i = heapq.heappop(heap)
        now = len(values[i] & uncovered)
        if now == 0:
            continue
        if now != -gain:
            heapq.heappush(heap, (-now, r, i))
            continue
        chosen.append(i)
        uncovered -= values[i]
    taken = set(chosen)
    rest = sorted((i for i in range(len(jobs)) if i not in taken), key=lambda i: rank[i])
    chosen += rest[: max(0, n - len(chosen))]
    covered: dict[Axis, set[str]] = {axis: set() for axis in axes}
    for i in chosen:
        for axis, value in values[i]:
            covered[axis].add(value)
    return Pilot(sorted(chosen), axes, covered, labels, len(jobs))


def _axes(jobs: Sequence[PilotJob]) -> tuple[dict[Axis, list[str]], dict[Axis, str]]:
    """The model, and per sweep each var and each input that varies there and is not made by
    the vars (a prompt filled from them, say)."""
    models = list(dict.fromkeys(job.model for job in jobs))
    axes: dict[Axis, list[str]] = {(None, "model"): models} if models else {}
    labels: dict[Axis, str] = {(None, "model"): "model"}
    groups: dict[int, list[PilotJob]] = {}
    for job in jobs:
        if job.sweep is not None:
            groups.setdefault(job.sweep, []).append(job)
    for sweep, members in groups.items():
        where = str(members[0].source or "").rsplit(":", 1)[-1]
        prefix = f"sweep {sweep + 1}" + (f" (line {where})" if where.isdigit() else "")
        names = dict.fromkeys(k for job in members for k in job.vars)
        for name in names:
            found = list(dict.fromkeys(_shown(job.vars.get(name)) for job in members))
            if len(found) > 1:
                axes[(sweep, f"vars.{name}")] = found
                labels[(sweep, f"vars.{name}")] = f"{prefix} {name}"
        given = [name for (s, name) in axes if s == sweep]
        for field in dict.fromkeys(k for job in members for k in job.inputs):
            found = list(dict.fromkeys(_shown(job.inputs.get(field)) for job in members))
            if len(found) > 1 and not _implied(members, given, field):
                axes[(sweep, field)] = found
                labels[(sweep, field)] = f"{prefix} {field}"
    return axes, labels


def _values(job: PilotJob, axes: dict[Axis, list[str]]) -> set[tuple[Axis, str]]:
    out = {((None, "model"), job.model)}
    for sweep, name in axes:
        if sweep is None or sweep != job.sweep:
            continue
        value = job.vars.get(name[5:]) if name.startswith("vars.") else job.inputs.get(name)
        out.add(((sweep, name), _shown(value)))
    return out


def _implied(jobs: Sequence[PilotJob], given: list[str], field: str) -> bool:
    """Whether `field` is the same for every job with the same model and vars (it follows)."""
    seen: dict[tuple[str, ...], str] = {}
    for job in jobs:
        at = (job.model, *(_shown(job.vars.get(n[5:])) for n in given if n.startswith("vars.")))
        value = _shown(job.inputs.get(field))
        if seen.setdefault(at, value) != value:
            return False
    return True


def _shown(value: Any) -> str:
    value = shown_input(value)
    return value if isinstance(value, str) else jsonenc.canonical(value)


def _rank(seed: Any, key: str) -> str:
    return hashlib.sha256(f"{seed!r}:{key}".encode()).hexdigest()


def _short(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
