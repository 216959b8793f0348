"""The offline pipeline, shared by `run` and `validate`: read a manifest, expand it into jobs,
validate them against their model's schema, check their output names; every problem at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from batch_runner.catalog import CatalogEntry, media_fields
from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.expand import Expander, Expansion, manifest_models
from batch_runner.manifest.job_checks import JobChecks, Lines
from batch_runner.manifest.media import Limits
from batch_runner.manifest.media_jobs import MediaCheck
from batch_runner.manifest.naming import check_template, template_warnings
from batch_runner.manifest.read import read_manifest
from batch_runner.manifest.read_txt import TextEntries
from batch_runner.manifest.rows import Manifest
from batch_runner.manifest.run_axis import (
    ReadRun,
    count_files,
    plain_problems,
    plain_with_run,
    runless,
)
from batch_runner.manifest.schema import (
    Checker,
    JobsCheck,
    Schemas,
    check_values,
    checker_for,
    typed_csv,
)
from batch_runner.manifest.stream import STREAM_ABOVE, JobStream, Select

Parsed = tuple[Manifest | None, list[Problem]]  # what read_manifest gives


def load_jobs(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    max_jobs: int = 100_000,
    name_template: str | None = None,
    parsed: Parsed | None = None,
    *,
    model: str | None = None,
    schemas: Schemas | None = None,
    media: Limits | None = None,
    refused: Mapping[str, str] | None = None,
    entries: Mapping[str, CatalogEntry | None] | None = None,
    stream: bool | None = None,
    select: Select | None = None,
    runs: ReadRun | None = None,
    tally: Callable[[JobSpec], None] | None = None,
) -> Expansion:
    """Read, expand and validate a manifest (and check output names when a template is given).

    `parsed` is what `read_manifest(path)` gave, when the caller has read it already; `model`
    replaces the manifest's model for jobs that name none (`--model`); `schemas` maps models
    to the schemas resolved for this run (others: the bundled catalogue's); `media`: the
    limits for media inputs (--max-inline-mb, --allow-input-host); `refused`: the models the
    catalogue says cannot be run (unknown, not a model endpoint), each a problem where named;
    `entries`: the catalogue entries resolved per model (a pipeline's `{from:}` kinds are
    checked with them); `stream`: whether the jobs come as a JobStream (made again on each
    pass, manifest/stream.py) or a list (None: a stream above STREAM_ABOVE jobs); `select`:
    the jobs a stream keeps as it checks them (a shard's: JobStream.select gives them);
    `runs`: reads another run directory's finished files, for `{run: DIR}` (run/run_axis.py).
    `tally`: told of each job as it is checked, in order (not a pipeline's stages' jobs).
    Raises ManifestError with every problem found, UsageError for a bad name template.
    """
    if name_template is not None:
        check_template(name_template)
    manifest, problems = parsed if parsed is not None else read_manifest(path)
    problems = list(problems)
    if manifest is None:
        raise ManifestError(problems)
    if model:
        manifest = dataclasses.replace(manifest, model=model)
    manifest, flat = _plain_run(manifest, problems)
    if manifest.stages:  # a pipeline: each stage loaded as a manifest of its own
        if problems:
            raise ManifestError(problems)
        try:
            return _load_stages(
                manifest, overrides, max_jobs, name_template, (schemas, media, entries), runs, flat
            )
        except ManifestError as exc:
            raise plain_problems(exc) if flat is not None else exc from None
    bases = _Bases(manifest, overrides or {}, schemas)
    if manifest.format == "csv":
        manifest, found = typed_csv(manifest, bases.checker)
        problems += found
    problems += bases.check_top()
    try:
        expander = Expander(manifest, None, max_jobs, bases.base, bases.media)
    except ManifestError as exc:
        raise ManifestError(_sorted(problems + exc.problems)) from None
    lines = _field_lines(manifest)
    media_check = MediaCheck(
        bases.schema, manifest.path.parent, media or Limits(), frozenset(overrides or {})
    )
    top = None if model else manifest.lines.get("model")
    checks = JobChecks(
        JobsCheck(schemas, lines, refused),
        media_check,
        lines,
        refused or {},
        (manifest.source.file, top, manifest.model),
        name_template,
        tally,
    )
    keep = len(expander) <= STREAM_ABOVE if stream is None else not stream
    jobs, first = _one_pass(checks, expander, keep, media_check, lines, select)
    problems += expander.problems
    # a bad default shows in every job: it is reported once, at the defaults
    reported = {(p.model, p.field.partition(".")[2], p.message) for p in bases.top if p.field}
    problems += [p for p in checks.schema.problems if (p.model, p.field, p.message) not in reported]
    problems += checks.problems(lambda positions: _jobs_at(jobs, positions))
    warnings = checks.warnings()
    if name_template is not None:
        warnings += template_warnings(name_template, first)
    if problems:
        raise ManifestError(_sorted(problems))
    expansion = expander.expansion(jobs)
    warnings = expansion.warnings + bases.warnings + warnings
    return dataclasses.replace(expansion, warnings=warnings)


def _one_pass(
    checks: JobChecks,
    expander: Expander,
    keep: bool,
    media_check: MediaCheck,
    lines: Lines,
    select: Select | None,
) -> tuple[list[JobSpec] | JobStream, list[JobSpec]]:
    """Every job made and checked once: (the jobs, kept as a list or made again by a
    JobStream, and the first job)."""
    kept: list[JobSpec] = []
    first: list[JobSpec] = []
    chosen: list[JobSpec] = []
    for job in checks.run(expander):
        if keep:
            kept.append(job)
            continue
        if not first:
            first.append(job)
        if select is not None and select(job):
            chosen.append(job)
    if keep:
        return kept, kept[:1]

    def again() -> Iterator[JobSpec]:  # one more pass: the same jobs, checked, in order
        check = media_check.again()
        for job in expander:
            yield check.job(job, lines.get(job.source or Location("<jobs>"), {}) if lines else {})

    selected = (select, chosen) if select is not None else None
    return JobStream(again, checks.count, checks.models, selected), first


def _jobs_at(jobs: Iterable[JobSpec], positions: set[int]) -> dict[int, JobSpec]:
    """The jobs at these 1-based positions (one pass over a stream)."""
    return {i: job for i, job in enumerate(jobs, 1) if i in positions}


def _field_lines(manifest: Manifest) -> dict[Location, dict[str, int]]:
    """Each entry's source -> the line of each of its fields (a .txt manifest has none)."""
    if isinstance(manifest.entries, TextEntries):
        return {}
    return {e.source: e.field_lines for e in manifest.entries if e.field_lines}


def _plain_run(manifest: Manifest, problems: list[Problem]) -> tuple[Manifest, Path | None]:
    """`{run: DIR}` in a plain manifest: read as a one-stage pipeline named after DIR whose
    files stay flat (and its DIR); every entry takes `{run:}` or none does."""
    flat = plain_with_run(manifest)
    if flat is None:
        return manifest, None
    mix = runless(manifest)
    if mix:
        raise ManifestError(_sorted([*problems, *mix]))
    if problems:
        return manifest, flat
    from batch_runner.manifest.stages import Stage

    stage = Stage(flat.name or "run", manifest, manifest.source.line)
    return dataclasses.replace(manifest, entries=[], stages=(stage,)), flat


def _load_stages(
    manifest: Manifest,
    overrides: dict[str, Any] | None,
    max_jobs: int,
    name_template: str | None,
    resolved: tuple[Schemas | None, Limits | None, Mapping[str, CatalogEntry | None] | None],
    runs: ReadRun | None,
    flat: Path | None,
) -> Expansion:
    from batch_runner.catalog import bundled_entry
    from batch_runner.manifest.stages import load_stages

    schemas, media, entries = resolved

    def load_one(stage: Manifest, later: bool) -> Expansion:
        parsed = (stage, [])
        template = None if later else name_template
        return load_jobs(
            stage.path, overrides, max_jobs, template, parsed, schemas=schemas, media=media
        )

    def kind_of(model: str) -> str | None:
        entry = (entries or {}).get(model) or bundled_entry(model)
        return entry.kind if entry is not None else None

    def schema_of(model: str) -> dict[str, Any] | None:
        checker = checker_for(model, schemas)
        return checker.schema if checker.known else None

    expansion = load_stages(manifest, load_one, schema_of, kind_of)
    plans = [dataclasses.replace(p, flat=True) if flat else p for p in expansion.stages or []]
    plans, problems = count_files(plans, runs)  # {run: DIR}: the other runs' files counted
    if problems:
        raise ManifestError(_sorted(problems))
    return dataclasses.replace(expansion, stages=plans)


class _Bases:
    """Per model: the defaults and --set values its jobs get. `defaults` fields the model does
    not declare are left out of its jobs (one warning per model and field); `model_defaults`
    are checked strictly; a --set field no known model declares is a problem."""

    def __init__(self, manifest: Manifest, overrides: dict[str, Any], schemas: Schemas | None):
        self.m = manifest
        self.overrides = overrides
        self.schemas = schemas
        self.top: list[Problem] = []  # problems of defaults / model_defaults / --set values
        self.warnings: list[str] = []
        self._checkers: dict[str, Checker] = {}
        self._bases: dict[str, tuple[dict, dict]] = {}
        self._media: dict[str, list[str]] = {}

    def checker(self, model: str) -> Checker:
        if model not in self._checkers:
            self._checkers[model] = checker_for(model, self.schemas)
        return self._checkers[model]

    def schema(self, model: str) -> dict[str, Any] | None:
        """The schema this run resolved for `model` (None when none is known)."""
        checker = self.checker(model)
        return checker.schema if checker.known else None

    def media(self, model: str) -> list[str]:
        """The model's media fields (URLs and files: never read as variants)."""
        found = self._media.get(model)
        if found is None:
            found = self._media[model] = list(media_fields(self.schema(model) or {}))
        return found

    def check_top(self) -> list[Problem]:
        """Problems of the values given for every job, found once: not once per job."""
        m, src = self.m, self.m.source
        models = manifest_models(m)
        for model in dict.fromkeys([*models, *m.model_defaults]):
            checker = self.checker(model)
            where = Location(src.file, m.lines.get("model_defaults"))
            own = m.model_defaults.get(model, {})
            if checker.known:
                self.top += [
                    Problem(where.file, where.line, "model_defaults", checker.unknown(k), model)
                    for k in own
                    if k not in checker.props
                ]
            self.top += check_values(own, checker, where, "model_defaults", model)
            self.top += check_values(m.defaults, checker, _at(m, "defaults"), "defaults", model)
            self.top += check_values(self.overrides, checker, src, "--set", model)
        self.top += self._unclaimed_overrides(models)
        return self.top

    def _unclaimed_overrides(self, models: list[str]) -> list[Problem]:
        checkers = [self.checker(model) for model in models]
        if not all(c.known for c in checkers):
            return []
        declared = set().union(*(c.props for c in checkers))
        src = self.m.source
        return [
            Problem(src.file, src.line, "--set", checkers[0].unknown(k))
            for k in self.overrides
            if k not in declared
        ]

    def base(self, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        found = self._bases.get(model)
        if found is None:
            found = self._bases[model] = self._base(model)
        return found

    def _base(self, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        checker = self.checker(model)
        own = self.m.model_defaults.get(model, {})
        if not checker.known:
            return {**self.m.defaults, **own}, dict(self.overrides)
        defaults = {}
        for field, value in self.m.defaults.items():
            if field in checker.props:
                defaults[field] = value
            else:
                self.warnings.append(
                    f"model {model}: defaults.{field} is not one of its inputs; "
                    "left out of its jobs"
                )
        overrides = {k: v for k, v in self.overrides.items() if k in checker.props}
        for field in self.overrides.keys() - overrides.keys():
            self.warnings.append(
                f"model {model}: --set {field} is not one of its inputs; left out of its jobs"
            )
        own = {k: v for k, v in own.items() if k in checker.props}
        return {**defaults, **own}, overrides


def _at(manifest: Manifest, key: str) -> Location:
    return Location(manifest.source.file, manifest.lines.get(key))


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line is not None, p.line or 0))
