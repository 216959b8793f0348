"""Turn manifest entries into jobs: defaults, repeats, sweeps (vars, zip, exclude), --set overrides.

Pure functions over a Manifest; the job count is computed arithmetically first so a manifest
that describes a billion jobs is refused before any of them is built.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from batch_runner.catalog import CatalogEntry
from batch_runner.errors import ManifestError, Problem, UsageError
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.media import is_files_axis
from batch_runner.manifest.rows import Entry, Manifest, repeat_problem
from batch_runner.manifest.sampling import (
    DEFAULT_SEED,
    draw_across,
    sample_problem,
    seed_problem,
)
from batch_runner.manifest.sweep_plan import (
    SweepPlan,
    files_of,
    parse_template,
    reserved_keys,
)
from batch_runner.manifest.variant_axes import MediaFields, lift_entries

JOB_KEYS = frozenset({"repeat", "meta", "vars"})

# a model -> (defaults, overrides) its jobs get: defaults under the job's inputs, overrides over
Base = Callable[[str], tuple[dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class Expansion:
    """The jobs a manifest describes, in order, with per-sweep counts and warnings."""

    model: str
    options: dict[str, Any]
    jobs: list[JobSpec]
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
    entries, lifted = lift_entries(manifest, media)
    manifest = dataclasses.replace(manifest, entries=entries)
    _check_count(manifest, max_jobs)
    builder = _Builder(manifest, overrides or {}, base)
    builder.problems += lifted
    plans = [SweepPlan(e, builder) if e.kind == "sweep" else None for e in entries]
    chosen = builder.top_sample(plans)
    sweep_counts = []
    for entry, plan, only in zip(entries, plans, chosen, strict=True):
        if plan is not None:
            made = builder.add_sweep(plan, len(sweep_counts), only)
            sweep_counts.append((entry.source, made))
        elif only is None or only:
            builder.add_job(entry)
    warnings = list(builder.warnings)
    if builder.duplicates:
        warnings.append(
            f"{builder.duplicates} job(s) have the same inputs as an earlier job; "
            "they were numbered as further copies of it"
        )
    expansion = Expansion(
        manifest.job_model,
        manifest.options,
        builder.jobs,
        sweep_counts,
        warnings,
        seed=manifest.seed,
    )
    return expansion, builder.problems


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


def _plain_defaults(manifest: Manifest, model: str) -> dict[str, Any]:
    return {**manifest.defaults, **manifest.model_defaults.get(model, {})}


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


def _check_count(manifest: Manifest, max_jobs: int) -> None:
    total = count_jobs(manifest)
    if total <= max_jobs:
        return
    biggest = max(manifest.entries, key=_entry_count)
    where = f"the largest entry (line {biggest.source.line}) makes {_entry_count(biggest):,}"
    msg = (
        f"the manifest describes {total:,} jobs, more than the limit of {max_jobs:,} ({where}); "
        "raise the limit with --max-jobs N if you mean it"
    )
    raise ManifestError([Problem(manifest.source.file, biggest.source.line, None, msg)])


class _Builder:
    """Accumulates jobs, problems and warnings while entries are expanded in order."""

    def __init__(self, manifest: Manifest, overrides: dict[str, Any], base: Base | None):
        self.m = manifest
        self.base = base or (lambda model: (_plain_defaults(manifest, model), overrides))
        self.jobs: list[JobSpec] = []
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.duplicates = 0
        self._next_copy: dict[Any, int] = {}
        self._templates: dict[str, list] = {}
        self._reported: set[tuple[Location, str]] = set()

    def problem(self, entry: Entry, field: str | None, message: str) -> None:
        line = entry.field_lines.get(field, entry.source.line) if field else entry.source.line
        self.problems.append(Problem(entry.source.file, line, field, message))

    def _extras(self, entry: Entry, data: dict[str, Any]) -> tuple[int, dict, bool]:
        """Read `repeat` and `meta`; the flag is False when either is unusable."""
        ok = True
        repeat = data.get("repeat", 1)
        problem = repeat_problem(repeat)
        if problem is not None:
            self.problem(entry, "repeat", problem)
            ok = False
        meta = data.get("meta", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            self.problem(entry, "meta", "must be a mapping")
            ok = False
        return repeat, meta, ok

    def _emit(self, entry: Entry, inputs: dict, n: int, meta: dict, variables: dict, sweep) -> None:
        model = inputs.pop("model", None) if "model" in inputs else self.m.job_model
        if not isinstance(model, str) or not model.strip() or model != model.strip():
            example = self.m.job_model
            self.problem(entry, "model", f"must be a model id like {example}, not {model!r}")
            return
        defaults, overrides = self.base(model)
        final = {**defaults, **inputs, **overrides}
        if None in final.values():
            final = {k: v for k, v in final.items() if v is not None}
        # the same inputs as an earlier job are further copies of it: the key of copy 0 is
        # the identity (computed once, then kept by that spec)
        spec = JobSpec(model, final, 0, meta, variables, entry.source, sweep)
        first = self._next_copy.get(spec.key, 0)
        self._next_copy[spec.key] = first + n
        if first:
            self.duplicates += 1
        for copy in range(first, first + n):
            self.jobs.append(spec if copy == 0 else dataclasses.replace(spec, copy=copy))

    def add_job(self, entry: Entry) -> None:
        data = entry.data
        if isinstance(data, str):
            self._emit(entry, {"prompt": data}, self.m.repeat, {}, {}, None)
            return
        for key, value in data.items():
            if key in ("zip", "exclude") or is_files_axis(value):
                self.problem(entry, key, "only allowed in sweep: entries")
                return
        repeat, meta, ok = self._extras(entry, data)
        variables = data.get("vars") or {}
        if not isinstance(variables, dict):
            self.problem(entry, "vars", "must be a mapping")
            ok = False
        if ok:
            inputs = {k: v for k, v in data.items() if k not in JOB_KEYS}
            self._emit(entry, inputs, repeat * self.m.repeat, meta, variables, None)

    def top_sample(self, plans: list[SweepPlan | None]) -> list[list[int] | None]:
        """The top-level `sample:`: which combinations of each entry are kept (None: all)."""
        m = self.m
        if m.sample is None:
            return [None] * len(plans)
        bad = sample_problem(m.sample) or seed_problem(m.seed)
        if bad is not None:
            key = "sample" if sample_problem(m.sample) else "seed"
            self.problems.append(Problem(m.source.file, m.lines.get(key), key, bad))
            return [[] for _ in plans]
        spaces = [p.chosen() if p is not None and p.ok else range(p is None) for p in plans]

        def keep(entry: int, index: int) -> bool:
            plan = plans[entry]
            return plan is None or plan.combo(index) is not None

        seed = DEFAULT_SEED if m.seed is None else m.seed
        chosen, complete = draw_across(spaces, m.sample, seed, keep)
        if not complete:
            self.warnings.append(f"sample: {m.sample}: most combinations are excluded; kept fewer")
        return chosen

    def add_sweep(self, plan: SweepPlan, index: int, only: list[int] | None = None) -> int:
        """Expand one sweep entry (`only`: these combinations); return how many jobs it made."""
        if not plan.ok:
            return 0
        entry = plan.entry
        before = len(self.jobs)
        n = plan.repeat * self.m.repeat
        for number in plan.chosen() if only is None else only:
            combo = plan.combo(number)
            if combo is None:
                continue
            inputs, variables = combo
            inputs = {k: self._fill(entry, k, v, variables) for k, v in inputs.items()}
            self._emit(entry, inputs, n, plan.meta, variables, index)
        made = len(self.jobs) - before
        if made == 0 and only is None:  # a top-level sample may pick none of it
            self.warnings.append(f"{entry.source}: this sweep produces no jobs")
        return made

    def _fill(self, entry: Entry, field: str, value: Any, variables: dict[str, Any]) -> Any:
        if not isinstance(value, str) or ("{" not in value and "}" not in value):
            return value
        parts = self._templates.get(value)
        if parts is None:
            parts = self._templates[value] = parse_template(value)
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, spec = part
            try:
                out.append(format(variables[name], spec or ""))
            except (KeyError, ValueError, TypeError) as exc:
                msg = f"cannot fill {{{name}}}: {exc}"
                if (entry.source, msg) not in self._reported:
                    self._reported.add((entry.source, msg))
                    self.problem(entry, field, msg)
                return value
        return "".join(out)
