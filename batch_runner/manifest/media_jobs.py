"""Every job's media inputs checked before anything is sent, local files turned into references.

Runs after expansion and schema validation (manifest/load.py). For each media field of a
job's model (catalog.media_fields): URLs are checked (https, public host), data URIs decoded
and checked, local files hashed and checked (each file once, however many jobs use it) and
replaced by a file reference (manifest/media.py). Nothing is read whole into memory here: the
data is encoded per job at submit time (run/inline.py).

A reference's key part is the file's content hash, so two jobs that differ only by the path of
identical files are one job (numbered as further copies, as for identical inputs).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import batch_runner.manifest.media as m
from batch_runner import jsonenc
from batch_runner.catalog import media_fields
from batch_runner.errors import Problem
from batch_runner.jobs import JobSpec, Location

SchemaFor = Callable[[str], Mapping[str, Any] | None]
Field = tuple[str, str, list[Any]]  # name, media kind, validations


@dataclasses.dataclass
class MediaCheck:
    """Checks jobs one by one, collecting problems and warnings (each reported once)."""

    schema_for: SchemaFor
    base: Path  # the manifest's folder: relative paths start here
    limits: m.Limits = dataclasses.field(default_factory=m.Limits)
    cwd_fields: frozenset[str] = frozenset()  # fields set by --set: relative to the cwd
    problems: list[Problem] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    duplicates: int = 0
    _fields: dict[str, list[Field]] = dataclasses.field(default_factory=dict)
    _facts: dict[str, m.Facts | str] = dataclasses.field(default_factory=dict)
    _seen: set[Any] = dataclasses.field(default_factory=set)
    _next_copy: dict[str, int] = dataclasses.field(default_factory=dict)

    def fields(self, model: str) -> list[Field]:
        found = self._fields.get(model)
        if found is None:
            schema = self.schema_for(model) or {}
            props = schema.get("properties") or {}
            found = self._fields[model] = [
                (name, kind, m.field_rules(props[name]))
                for name, (kind, _many) in media_fields(schema).items()
            ]
            for name, _kind, rules in found:
                for rule in m.unknown_rules(rules):
                    self.warnings.append(
                        f"model {model}: {name}: validation rule {rule!r} is not known to "
                        "batch_runner; it is not checked before sending"
                    )
        return found

    def check_all(self, jobs: list[JobSpec], lines: dict[Location, dict[str, int]]) -> list:
        out = [self.job(job, lines.get(job.source or Location("<jobs>"), {})) for job in jobs]
        self.finish()
        return out

    def finish(self) -> None:
        """After the last job: the warning about identical input files."""
        if self.duplicates:
            self.warnings.append(
                f"{self.duplicates} job(s) have input files identical to an earlier job's; "
                "they were numbered as further copies of it"
            )

    def again(self) -> MediaCheck:
        """A check for another pass over the same jobs: the files' facts are kept (each file
        is read once), the copy numbers start again."""
        return dataclasses.replace(
            self, problems=[], warnings=[], duplicates=0, _seen=set(), _next_copy={}
        )

    def job(self, job: JobSpec, lines: dict[str, int]) -> JobSpec:
        """The job with its local files as references (problems are collected)."""
        fields = self.fields(job.model)
        if not fields:
            return job
        inputs = dict(job.inputs)
        for name, kind, rules in fields:
            value = inputs.get(name)
            where = _Where(self, job, name, lines)
            if isinstance(value, str):
                inputs[name] = self._value(value, kind, rules, where, name)
            elif isinstance(value, list):
                inputs[name] = [
                    self._value(v, kind, rules, where, f"{name}.{i}") if isinstance(v, str) else v
                    for i, v in enumerate(value)
                ]
        self._check_body(job, inputs, [f[0] for f in fields], lines)
        if inputs == job.inputs:
            return _named(job, fields)
        return self._numbered(_named(dataclasses.replace(job, inputs=inputs, copy=0), fields), job)

    def _numbered(self, spec: JobSpec, old: JobSpec) -> JobSpec:
        """Copy numbers counted over the content keys (identical files: further copies)."""
        copy = self._next_copy.get(spec.key, 0)
        self._next_copy[spec.key] = copy + 1
        self.duplicates += copy != old.copy and old.copy == 0
        return dataclasses.replace(spec, copy=copy) if copy else spec

    def _value(self, value: str, kind: str, rules: list[Any], where: _Where, label: str) -> Any:
        if value.startswith("data:"):
            facts = self._facts_of(value, lambda: m.data_uri_facts(value, self.limits))
            where.report(label, self._file_problem(facts, kind, rules))
            return value
        if not m.is_local_path(value):
            where.report(label, _naming(value, m.url_problem(value, self.limits)))
            return value
        if not value.strip():
            where.report(label, "empty: give an https URL, a data: URI or a file path")
            return value
        base = Path.cwd() if where.field in self.cwd_fields else self.base
        path = Path(os.path.abspath(m.resolve_path(value, base)))
        facts = self._facts_of(str(path), lambda: m.file_facts(path, self.limits))
        problem = self._file_problem(facts, kind, rules)
        if problem is not None and problem.startswith("no such file"):
            problem += m.missing_hint(value)
        where.report(label, _naming(value, problem))
        if problem is not None or isinstance(facts, str):
            return value
        return m.file_ref(path, facts)

    def _facts_of(self, key: str, read: Callable[[], m.Facts | str]) -> m.Facts | str:
        facts = self._facts.get(key)
        if facts is None:
            facts = self._facts[key] = read()
        return facts

    @staticmethod
    def _file_problem(facts: m.Facts | str, kind: str, rules: list[Any]) -> str | None:
        if isinstance(facts, str):
            return facts
        return m.kind_problem(facts, kind) or m.rule_problem(facts, rules)

    def _check_body(
        self, job: JobSpec, inputs: dict[str, Any], names: list[str], lines: dict[str, int]
    ) -> None:
        inline = 0
        for name in names:
            value = inputs.get(name)
            for v in value if isinstance(value, list) else [value]:
                inline += m.inline_size(v)
        if inline < m.MAX_BODY_BYTES // 2:  # the other inputs cannot make up the rest
            return
        rest = {k: v for k, v in inputs.items() if k not in names}
        total = inline + len(jsonenc.canonical(rest))
        if total > m.MAX_BODY_BYTES:
            _Where(self, job, None, lines).report(
                None,
                f"the request would be {total / m.MB:.1f} MiB, over RunComfy's limit of "
                f"{m.MAX_BODY_BYTES // m.MB} MiB per request; give some inputs as https URLs",
            )


@dataclasses.dataclass
class _Where:
    """Where a problem with one field of one job is reported (each problem once)."""

    check: MediaCheck
    job: JobSpec
    field: str | None
    lines: dict[str, int]

    def report(self, label: str | None, message: str | None) -> None:
        if message is None:
            return
        loc = self.job.source or Location("<jobs>")
        line = self.lines.get(self.field, loc.line) if self.field else loc.line
        signature = (loc.file, line, label, message, self.job.model)
        if signature not in self.check._seen:
            self.check._seen.add(signature)
            self.check.problems.append(Problem(*signature))


def _naming(value: str, problem: str | None) -> str | None:
    """A problem about a file or URL, naming it as the manifest (or a folder sweep) wrote it:
    in a sweep or a list, the field alone does not say which value is wrong."""
    if problem is None:
        return None
    shown = value if len(value) <= 120 else value[:117] + "..."
    return f"{shown}: {problem}"


def _named(job: JobSpec, fields: list[Field]) -> JobSpec:
    """Add {input_stem} (the file name without its extension of the first media input: a file
    or a URL) to the job's vars, for name templates; a var of the user's with that name wins.
    (One var only: the report makes grid axes of vars, and a second would repeat this one.)"""
    for name, _kind, _rules in fields:
        value = job.inputs.get(name)
        first = value[0] if isinstance(value, list) and value else value
        file_name = _file_name(first)
        if file_name:
            stem = posixpath.splitext(file_name)[0] or file_name
            return dataclasses.replace(job, vars={"input_stem": stem, **job.vars})
    return job


def _file_name(value: Any) -> str | None:
    """The file name of a media input; a path that could not be used still has one (its job
    is refused for that, not also for a name template's {input_stem})."""
    if m.is_file_ref(value):
        return Path(value[m.LOCAL_FILE]).name
    if not isinstance(value, str):
        return None
    if value.startswith(("https://", "http://")):
        return posixpath.basename(urlsplit(value).path) or None
    if m.is_local_path(value) and value.strip():
        return Path(value).name or None
    return None
