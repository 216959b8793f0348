"""The offline pipeline, shared by `run` and `validate`: read a manifest, expand it into jobs,
validate them against their model's schema, check their output names; every problem at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from batch_runner.catalog import CatalogEntry, media_fields
from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.expand import Expansion, collect_expansion, manifest_models
from batch_runner.manifest.media import Limits
from batch_runner.manifest.media_jobs import MediaCheck
from batch_runner.manifest.meta import meta_problems
from batch_runner.manifest.naming import check_template, name_clashes, template_warnings
from batch_runner.manifest.prompts import prompt_problems
from batch_runner.manifest.read import read_manifest
from batch_runner.manifest.rows import Manifest
from batch_runner.manifest.schema import (
    Checker,
    Schemas,
    check_values,
    checker_for,
    typed_csv,
    validate_jobs,
)

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
) -> Expansion:
    """Read, expand and validate a manifest (and check output names when a template is given).

    `parsed` is what `read_manifest(path)` gave, when the caller has read it already; `model`
    replaces the manifest's model for jobs that name none (`--model`); `schemas` maps models
    to the schemas resolved for this run (others: the bundled catalogue's); `media`: the
    limits for media inputs (--max-inline-mb, --allow-input-host); `refused`: the models the
    catalogue says cannot be run (unknown, not a model endpoint), each a problem where named;
    `entries`: the catalogue entries resolved per model (a pipeline's `{from:}` kinds are
    checked with them).
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
    if manifest.stages:  # a pipeline: each stage loaded as a manifest of its own
        if problems:
            raise ManifestError(problems)
        return _load_stages(manifest, overrides, max_jobs, name_template, schemas, media, entries)
    bases = _Bases(manifest, overrides or {}, schemas)
    if manifest.format == "csv":
        manifest, found = typed_csv(manifest, bases.checker)
        problems += found
    problems += bases.check_top()
    try:
        expansion, found = collect_expansion(manifest, None, max_jobs, bases.base, bases.media)
    except ManifestError as exc:
        raise ManifestError(_sorted(problems + exc.problems)) from None
    problems += found
    lines = {e.source: e.field_lines for e in manifest.entries if e.field_lines}
    found, warnings = validate_jobs(expansion.jobs, schemas, field_lines=lines, refused=refused)
    problems += _refused_problems(expansion.jobs, refused or {}, lines, manifest, model)
    # a bad default shows in every job: it is reported once, at the defaults
    reported = {(p.model, p.field.partition(".")[2], p.message) for p in bases.top if p.field}
    problems += [p for p in found if (p.model, p.field, p.message) not in reported]
    check = MediaCheck(
        bases.schema, manifest.path.parent, media or Limits(), frozenset(overrides or {})
    )
    expansion = dataclasses.replace(expansion, jobs=check.check_all(expansion.jobs, lines))
    problems += check.problems
    warnings += check.warnings
    problems += meta_problems(expansion.jobs)
    found, long_prompts = prompt_problems(expansion.jobs)
    problems += found
    warnings += long_prompts
    if name_template is not None:
        problems += _name_problems(expansion.jobs, name_template)
        warnings += template_warnings(name_template, expansion.jobs[:1])
    if problems:
        raise ManifestError(_sorted(problems))
    warnings = expansion.warnings + bases.warnings + warnings
    return dataclasses.replace(expansion, warnings=warnings)


def _load_stages(
    manifest: Manifest,
    overrides: dict[str, Any] | None,
    max_jobs: int,
    name_template: str | None,
    schemas: Schemas | None,
    media: Limits | None,
    entries: Mapping[str, CatalogEntry | None] | None,
) -> Expansion:
    from batch_runner.catalog import bundled
    from batch_runner.manifest.stages import load_stages

    def load_one(stage: Manifest, later: bool) -> Expansion:
        parsed = (stage, [])
        template = None if later else name_template
        return load_jobs(
            stage.path, overrides, max_jobs, template, parsed, schemas=schemas, media=media
        )

    def kind_of(model: str) -> str | None:
        entry = (entries or {}).get(model) or bundled().get(model)
        return entry.kind if entry is not None else None

    def schema_of(model: str) -> dict[str, Any] | None:
        checker = checker_for(model, schemas)
        return checker.schema if checker.known else None

    return load_stages(manifest, load_one, schema_of, kind_of)


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
        return list(media_fields(self.schema(model) or {}))

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


def _refused_problems(
    jobs: list[JobSpec],
    refused: Mapping[str, str],
    lines: dict[Location, dict[str, int]],
    manifest: Manifest,
    flag_model: str | None,
) -> list[Problem]:
    """One problem per place a refused model is named: a job's (or sweep's) `model:` line,
    else the manifest's own `model:` line (a --model value: the file, no line)."""
    top = None if flag_model else manifest.lines.get("model")
    found: dict[tuple, Problem] = {}
    for job in jobs:
        if job.model not in refused:
            continue
        loc = _where(job)
        line = lines.get(loc, {}).get("model")  # the job (or its sweep) names the model
        if line is None and job.model == manifest.model:  # the manifest's model for every job
            loc, line = manifest.source, top
        elif line is None:
            line = loc.line
        key = (loc.file, line, job.model)
        if key not in found:
            found[key] = Problem(loc.file, line, None, refused[job.model], job.model)
    return list(found.values())


def _at(manifest: Manifest, key: str) -> Location:
    return Location(manifest.source.file, manifest.lines.get(key))


def _name_problems(jobs: list[JobSpec], template: str) -> list[Problem]:
    """Report the fields a job lacks for its file name, and names that clash (once per pair of
    lines, however many of their jobs clash)."""
    clashes, failed = name_clashes(template, enumerate(jobs, 1))
    problems: dict[tuple, Problem] = {}
    for job, why in failed:
        loc = _where(job)
        problems.setdefault((loc, why), Problem(loc.file, loc.line, None, why))
    by_lines: dict[tuple[Location, Location], list[str]] = {}
    for first, other, name in clashes:
        by_lines.setdefault((_where(first), _where(other)), []).append(name)
    for (a, b), clashing in by_lines.items():
        more = f" ({len(clashing)} clashing names between these lines)" if len(clashing) > 1 else ""
        msg = (
            f"output name {clashing[0]!r} is also given to the job from line {a.line}{more}; "
            "add {index}, {key} or a field that differs to the name template"
        )
        problems[(a, b)] = Problem(b.file, b.line, None, msg)
    return list(problems.values())


def _where(job: JobSpec) -> Location:
    return job.source or Location("<jobs>")


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line is not None, p.line or 0))
