"""Turn manifest entries into jobs: defaults, repeats, sweeps (vars, zip, exclude), --set overrides.

Pure functions over a Manifest; the job count is computed arithmetically first so a manifest
that describes a billion jobs is refused before any of them is built. The jobs are made one at
a time (Expander: one pass per iteration; job_builder.py makes them), so a caller may keep
them (a list) or pass over them again instead (manifest/stream.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from batch_runner.catalog import CatalogEntry
from batch_runner.errors import ManifestError, Problem, UsageError
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.job_builder import Base, JobBuilder
from batch_runner.manifest.media import is_files_axis
from batch_runner.manifest.rows import Entry, Manifest, repeat_problem
from batch_runner.manifest.sampling import sample_problem
from batch_runner.manifest.sweep_plan import files_of, reserved_keys
from batch_runner.manifest.variant_axes import Lifter, MediaFields, lift_entries


@dataclass(frozen=True)
class Expansion:
    """The jobs a manifest describes, in order, with per-sweep counts and warnings."""

    model: str
    options: dict[str, Any]
    jobs: list[JobSpec]  # or a JobStream (manifest/stream.py): iterate, len(), [i], [:n]
    sweep_counts: list[tuple[Location, int]]
    warnings: list[str]
    # each model's catalogue entry as validation resolved it (live, cached or bundled; None: in
    # no catalogue): what its jobs' prices come from. A model missing here (its schema given
    # by a --schema file, or named by a template) is priced by run/pricing.py on its own
    entries: dict[str, CatalogEntry | None] = dataclasses.field(default_factory=dict)
    stages: list[Any] | None = None  # a pipeline's stage plans (manifest/stages.py: StagePlan)
    seed: Any = None  # the manifest's top-level `seed:` (its sample's; --pilot's too)

    def model_counts(self) -> dict[str, int]:
        """Jobs per model, in first-use order."""
        known = getattr(self.jobs, "models", None)  # a JobStream counted them as it checked
        if known is not None:
            return dict(known)
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.model] = counts.get(job.model, 0) + 1
        return counts


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse `--set key=value` items; the value is typed as YAML would (3 → int, png → str)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected key=value, e.g. --set resolution=2K")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        # only scalars are typed: "a: b" must stay a prompt, not become a mapping; a
        # structured input is given as JSON ('[{"prompt": "a"}]')
        if not (value is None or isinstance(value, str | int | float | bool)):
            value = _json_or(raw)
        out[key] = value
    return out


def _json_or(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def count_jobs(manifest: Manifest) -> int:
    """How many jobs the manifest describes (an upper bound: sweep excludes are not subtracted;
    variants count once their entries are lifted, see collect_expansion)."""
    total = sum(_entry_count(e) for e in manifest.entries)
    if manifest.sample is not None and sample_problem(manifest.sample) is None:
        most = max(
            (_repeat_of(e.data) for e in manifest.entries if isinstance(e.data, dict)), default=1
        )
        total = min(total, manifest.sample * most)
    return total * manifest.repeat


def expand(
    manifest: Manifest, overrides: dict[str, Any] | None = None, max_jobs: int = 100_000
) -> Expansion:
    """Build every job of the manifest; ManifestError on any problem or above `max_jobs`."""
    expansion, problems = collect_expansion(manifest, overrides, max_jobs)
    if problems:
        raise ManifestError(problems)
    return expansion


def collect_expansion(
    manifest: Manifest,
    overrides: dict[str, Any] | None = None,
    max_jobs: int = 100_000,
    base: Base | None = None,
    media: MediaFields | None = None,
) -> tuple[Expansion, list[Problem]]:
    """Like expand() but returns the problems (entries with problems give no jobs).

    `base(model)` gives the defaults and overrides of a model's jobs (default: the manifest's
    `defaults` and `model_defaults`, and `overrides`, all kept); `media(model)` its media
    fields (never read as variants). Variants become sweep axes first (variant_axes.py);
    `sample:` keeps some combinations (sampling.py). Only a count above `max_jobs` raises,
    since then nothing is built.
    """
    expander = Expander(manifest, overrides, max_jobs, base, media)
    jobs = list(expander)
    return expander.expansion(jobs), expander.problems


class Expander:
    """A manifest's jobs, made one at a time: each iteration is one pass over its entries and
    makes the same jobs in the same order, so a million jobs need never be held at once. The
    first pass's problems, warnings and sweep counts are kept (later passes find the same).

    Raises ManifestError when the manifest describes more than `max_jobs` jobs (counted
    arithmetically: nothing is built)."""

    def __init__(
        self,
        manifest: Manifest,
        overrides: dict[str, Any] | None = None,
        max_jobs: int = 100_000,
        base: Base | None = None,
        media: MediaFields | None = None,
    ):
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.sweep_counts: list[tuple[Location, int]] = []
        self.passes = 0
        self._overrides = overrides or {}
        self._base = base
        if manifest.sample is not None:  # a sample draws across every entry: lifted at once
            entries, self.problems = lift_entries(manifest, media)
        else:
            entries = _Lifted(manifest, media)
        self.m = dataclasses.replace(manifest, entries=entries)  # type: ignore[arg-type]
        self.count = _check_count(self.m, max_jobs)  # an upper bound (see count_jobs)
        if isinstance(entries, _Lifted):
            self.problems = entries.lifter.problems

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[JobSpec]:
        first = self.passes == 0
        self.passes += 1
        builder = JobBuilder(self.m, self._overrides, self._base)
        if self.m.sample is None:
            yield from builder.add_all(self.m.entries)
        else:
            yield from builder.add_sampled(self.m.entries)
        if first:
            self.problems += builder.problems
            self.warnings = list(builder.warnings)
            if builder.duplicates:
                self.warnings.append(
                    f"{builder.duplicates} job(s) have the same inputs as an earlier job; "
                    "they were numbered as further copies of it"
                )
            self.sweep_counts = builder.sweep_counts

    def expansion(self, jobs: Any) -> Expansion:
        """The Expansion of these jobs (a list, or a re-iterable stream of them)."""
        m = self.m
        return Expansion(
            m.job_model, m.options, jobs, self.sweep_counts, self.warnings, seed=m.seed
        )


class _Lifted:
    """A manifest's entries with their variants lifted, one at a time on each iteration (the
    problems of the first pass are kept in the lifter)."""

    def __init__(self, manifest: Manifest, media: MediaFields | None):
        self.entries = manifest.entries
        self.lifter = Lifter(manifest, media or (lambda model: ()))
        self._first = True

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        lifter = self.lifter if self._first else Lifter(self.lifter.m, self.lifter.media)
        self._first = False
        for entry in self.entries:
            lifted = lifter.lift(entry)
            if lifted is not None:
                yield lifted


def manifest_models(manifest: Manifest) -> list[str]:
    """Every model a manifest's jobs may use, in first-use order: the one of jobs that name
    none, then those named by entries (a string, or a list of them in a sweep)."""
    found = {manifest.job_model: None}
    for stage in manifest.stages:  # a pipeline: every stage's models
        found |= dict.fromkeys(manifest_models(stage.manifest))
    for entry in manifest.entries:
        value = entry.data.get("model") if isinstance(entry.data, dict) else None
        for model in value if isinstance(value, list) else [value]:
            if isinstance(model, str) and model.strip() and "{" not in model:
                found[model] = None
    return list(found)


def _repeat_of(data: dict[str, Any]) -> int:
    value = data.get("repeat", 1)
    return value if repeat_problem(value) is None else 1


def _entry_count(entry: Entry) -> int:
    data = entry.data
    if not isinstance(data, dict):
        return 1
    n = _repeat_of(data)
    if entry.kind != "sweep":
        return n
    combos = 1
    reserved = reserved_keys(data)
    for key, value in data.items():
        if key not in reserved and isinstance(value, list):
            combos *= len(value)
        elif key not in reserved and is_files_axis(value):
            combos *= len(files_of(entry, value))
    variables = data.get("vars")
    if isinstance(variables, dict):
        combos *= math.prod(len(v) if isinstance(v, list) else 1 for v in variables.values())
    zipped = data.get("zip")
    if isinstance(zipped, dict):
        combos *= max((len(v) for v in zipped.values() if isinstance(v, list)), default=1)
    if sample_problem(data.get("sample")) is None:
        combos = min(combos, data["sample"])
    return n * combos


def _check_count(manifest: Manifest, max_jobs: int) -> int:
    total = count_jobs(manifest)
    if total <= max_jobs:
        return total
    biggest = max(manifest.entries, key=_entry_count)
    most, line = _entry_count(biggest), biggest.source.line
    if most * 2 > total or most > max_jobs:  # one entry makes most of them: name it
        where = f" (the largest entry (line {line}) makes {most:,})"
    else:  # many small entries (a long .txt, CSV or JSONL): their number says it
        where, line = f" ({len(manifest.entries):,} entries)", None
    msg = (
        f"the manifest describes {total:,} jobs{where}, more than the limit of {max_jobs:,}; "
        "raise the limit with --max-jobs N if you mean it (e.g. --max-jobs "
        f"{_round_up(total)})"  # as typed: no commas
    )
    raise ManifestError([Problem(manifest.source.file, line, None, msg)])


def _round_up(n: int) -> int:
    """A limit just above n with one or two significant digits (1,019,000 → 1,100,000)."""
    step = 10 ** max(0, len(str(n)) - 2)
    return -(-n // step) * step
