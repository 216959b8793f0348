"""The offline pipeline, shared by `run` and `validate`: read a manifest, expand it into jobs,
validate them against their model's schema, check their output names; every problem at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.expand import Expansion, collect_expansion
from batch_runner.manifest.meta import meta_problems
from batch_runner.manifest.naming import check_template, name_clashes, template_warnings
from batch_runner.manifest.prompts import prompt_problems
from batch_runner.manifest.read import read_manifest
from batch_runner.manifest.rows import Manifest
from batch_runner.manifest.schema import checker_for, known_keys, typed_csv, validate_jobs

Parsed = tuple[Manifest | None, list[Problem]]  # what read_manifest gives


def load_jobs(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    max_jobs: int = 100_000,
    name_template: str | None = None,
    parsed: Parsed | None = None,
) -> Expansion:
    """Read, expand and validate a manifest (and check output names when a template is given).

    `parsed` is what `read_manifest(path)` gave, when the caller has read it already.
    Raises ManifestError with every problem found, UsageError for a bad name template.
    """
    if name_template is not None:
        check_template(name_template)
    manifest, problems = parsed if parsed is not None else read_manifest(path)
    problems = list(problems)
    if manifest is None:
        raise ManifestError(problems)
    checker = checker_for(manifest.model)
    if manifest.format == "csv":
        manifest, found = typed_csv(manifest, checker)
        problems += found
    defaults, from_defaults = known_keys(manifest.defaults, checker, manifest.source, "defaults")
    overrides, from_set = known_keys(overrides or {}, checker, manifest.source, "--set")
    problems += from_defaults + from_set
    manifest = dataclasses.replace(manifest, defaults=defaults)
    try:
        expansion, found = collect_expansion(manifest, overrides, max_jobs)
    except ManifestError as exc:
        raise ManifestError(_sorted(problems + exc.problems)) from None
    problems += found
    lines = {e.source: e.field_lines for e in manifest.entries if e.field_lines}
    found, warnings = validate_jobs(expansion.jobs, field_lines=lines)
    # a bad default shows in every job: it is reported once, at the defaults
    reported = {(p.field.partition(".")[2], p.message) for p in from_defaults + from_set if p.field}
    problems += [p for p in found if (p.field, p.message) not in reported]
    problems += meta_problems(expansion.jobs)
    found, long_prompts = prompt_problems(expansion.jobs)
    problems += found
    warnings += long_prompts
    if name_template is not None:
        problems += _name_problems(expansion.jobs, name_template)
        warnings += template_warnings(name_template, expansion.jobs[:1])
    if problems:
        raise ManifestError(_sorted(problems))
    return dataclasses.replace(expansion, warnings=expansion.warnings + warnings)


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
