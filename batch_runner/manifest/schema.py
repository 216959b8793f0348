"""Validate jobs against the JSON Schema of their own model; problems carry file:line and model.

The schemas come from the caller (resolved per model by the catalogue: `--schema` file, live,
cached, bundled); a model not handed in falls back to the bundled catalogue. Also the
schema-driven steps of the offline pipeline (manifest/load.py): typing CSV cells and checking
`defaults:` and `--set` values once.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from batch_runner import catalog
from batch_runner.errors import Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.job_builder import JOB_KEYS
from batch_runner.manifest.rows import Entry, Manifest

# top-level keywords field-by-field checking understands; any other means "validate whole"
_SIMPLE_KEYWORDS = {
    "type",
    "title",
    "description",
    "properties",
    "required",
    "$schema",
    "$id",
    "omitted_inputs",  # the curated catalogue's note of inputs it left undescribed
}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment"}
_PLAIN = {"string": str, "integer": int, "number": int | float, "object": dict, "array": list}
# a field stating only a type and an enum is checked by membership; jsonschema explains misses
_EXACT = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
# CSV cells of these types are read as such (None: an input of any JSON, such as a structured
# input the catalogue leaves undescribed)
_CELL_TYPES = ("integer", "number", "boolean", "array", "object", None)
_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

Error = tuple[str | None, str, str | None]  # (field shown, message, field whose line to use)


Schemas = Mapping[str, "dict[str, Any] | None"]  # model -> schema (None: in no catalogue)


def _bundled(model: str) -> dict[str, Any] | None:
    entry = catalog.bundled_entry(model)
    return entry.input_schema if entry is not None else None


def load_schema(model: str) -> dict[str, Any] | None:
    """The bundled input JSON Schema of a model (a fresh copy), or None for an unknown model."""
    return catalog.bundled_schema(model)


def schema_of(model: str, schemas: Schemas | None = None) -> dict[str, Any] | None:
    """The schema to check `model`'s jobs with: the one handed in, else the bundled one."""
    if schemas is not None and model in schemas:
        return schemas[model]
    return _bundled(model)


def unknown_model_warning(model: str) -> str:
    guesses = catalog.suggestions(model, catalog.bundled())
    hint = f"; did you mean {' or '.join(repr(g) for g in guesses)}?" if guesses else ""
    return (
        f"model '{model}' is in no catalogue: its inputs are only checked to be a JSON object "
        f"(--schema FILE gives a schema to check them with){hint}"
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Any) -> str:
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{_show(error.instance)} is not one of the allowed values (allowed: {allowed})"
    if error.validator in _BOUNDS:
        sub = error.schema if isinstance(error.schema, dict) else {}
        low = sub.get("minimum", sub.get("exclusiveMinimum"))
        high = sub.get("maximum", sub.get("exclusiveMaximum"))
        bounds = f"{'' if low is None else low}..{'' if high is None else high}"
        return f"{_show(error.instance)} is out of bounds (allowed: {bounds})"
    if error.validator == "type":
        types = error.validator_value
        types = [types] if isinstance(types, str) else types
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return f"must be {wanted}, not {_show(error.instance)}"
    return error.message if len(error.message) <= 200 else error.message[:197] + "..."


class Checker:
    """A compiled validator for one model's inputs, checking each field value once."""

    def __init__(self, schema: dict[str, Any] | None):
        self.known = schema is not None
        self.schema = schema or {"type": "object"}
        self.props: dict[str, Any] = self.schema.get("properties", {})
        self.required: list[str] = self.schema.get("required", [])
        self.by_field = set(self.schema) <= _SIMPLE_KEYWORDS
        # a field that only states a plain type is checked with isinstance, not jsonschema
        self.plain = {
            name: _PLAIN[sub["type"]]
            for name, sub in self.props.items()
            if isinstance(sub, dict)
            and set(sub) <= _ANNOTATIONS | {"type"}
            and isinstance(sub.get("type"), str)
            and sub["type"] in _PLAIN
        }
        self.choices = {
            name: (_EXACT[sub["type"]], sub["enum"])
            for name, sub in self.props.items()
            if isinstance(sub, dict)
            and set(sub) <= _ANNOTATIONS | {"type", "enum"}
            and sub.get("type") in _EXACT
            and isinstance(sub.get("enum"), list)
        }
        self._cache: dict[Any, list[Error]] = {}

    @functools.cached_property
    def _validators(self) -> tuple[Any, dict[str, Any]]:
        """jsonschema validators for the whole schema and each field (imported on first use:
        valid jobs of a plain schema never need it, and the import costs ~30 ms)."""
        from jsonschema.validators import validator_for

        cls = validator_for(self.schema)
        return cls(self.schema), {name: cls(sub) for name, sub in self.props.items()}

    def allowed(self) -> str:
        return ", ".join([*self.props, "model", *sorted(JOB_KEYS - {"vars"})])

    def unknown(self, name: str) -> str:
        guess = difflib.get_close_matches(name, list(self.props), n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return f"unknown field {name!r} (allowed: {self.allowed()}){hint}"

    def errors(self, inputs: Any, *, partial: bool = False) -> list[Error]:
        """Every problem of one job's inputs; `partial` skips required fields (for defaults)."""
        if not isinstance(inputs, dict):
            return [(None, "inputs must be a JSON object (a mapping)", None)]
        out: list[Error] = []
        if self.known:
            out += [(None, self.unknown(k), k) for k in inputs if k not in self.props]
        if not self.by_field:
            return out + self._whole(inputs, partial)
        if not partial:
            out += [(name, "required", None) for name in self.required if name not in inputs]
        for name, value in inputs.items():
            if name in self.props:
                out += self._field(name, value)
        return out

    def _field(self, name: str, value: Any) -> list[Error]:
        plain = self.plain.get(name)
        if plain is not None and isinstance(value, plain) and not isinstance(value, bool):
            return []
        choice = self.choices.get(name)
        if choice is not None and type(value) in choice[0] and value in choice[1]:
            return []  # type(): True must not pass for 1, nor 1.0 for an integer field
        # distinct prompts miss this cache, but enums and numbers (the usual errors) hit it
        cache_key = (name, type(value), value) if isinstance(value, str | int | float) else None
        found = self._cache.get(cache_key) if cache_key else None
        if found is not None:
            return found
        found: dict[str, Any] = {}
        for e in self._validators[1][name].iter_errors(value):
            path = ".".join([name, *(str(p) for p in e.absolute_path)])
            # one problem per field: the allowed values say more than the type
            if path not in found or e.validator == "enum":
                found[path] = e
        errors = [(path, _message(e), name) for path, e in found.items()]
        if cache_key and len(self._cache) < 100_000:
            self._cache[cache_key] = errors
        return errors

    def _whole(self, inputs: dict[str, Any], partial: bool) -> list[Error]:
        out: list[Error] = []
        for e in self._validators[0].iter_errors(inputs):
            if e.validator == "required":
                if not partial:
                    out += [(r, "required", None) for r in e.validator_value if r not in e.instance]
                continue
            if e.validator == "additionalProperties" and self.known:
                continue  # reported above as unknown fields, with the allowed list
            path = ".".join(str(p) for p in e.absolute_path) or None
            top = str(e.absolute_path[0]) if e.absolute_path else None
            out.append((path, _message(e), top))
        return out


def validate_jobs(
    jobs: Iterable[JobSpec],
    schemas: Schemas | None = None,
    field_lines: dict[Location, dict[str, int]] | None = None,
    refused: Mapping[str, str] | None = None,
) -> tuple[list[Problem], list[str]]:
    """Check every job against its own model's schema; return (problems, warnings).

    `schemas` maps model → schema to use instead of the bundled ones (None: in no catalogue);
    `field_lines` (job source → line of each field) lets a problem name its field's own line;
    the jobs of a model in `refused` (one the catalogue says cannot be run) are not checked:
    the caller reports the model itself.
    A problem repeated by many jobs from the same line is reported once; a model in no
    catalogue is warned about once.
    """
    check = JobsCheck(schemas, field_lines, refused)
    for job in jobs:
        check.job(job)
    return check.problems, check.warnings


class JobsCheck:
    """validate_jobs one job at a time (a stream of jobs is checked as it is made)."""

    def __init__(
        self,
        schemas: Schemas | None = None,
        field_lines: dict[Location, dict[str, int]] | None = None,
        refused: Mapping[str, str] | None = None,
    ):
        self.schemas = schemas
        self.field_lines = field_lines or {}
        self.refused = refused or {}
        self.checkers: dict[str, Checker] = {}
        self.warnings: list[str] = []
        self.problems: list[Problem] = []
        self.seen: set[tuple] = set()

    def job(self, job: JobSpec) -> None:
        loc = job.source or Location("<jobs>")
        if job.model in self.refused:  # the caller reports it where the model is named
            return
        checker = self.checkers.get(job.model)
        if checker is None:
            checker = self.checkers[job.model] = Checker(schema_of(job.model, self.schemas))
            if not checker.known:
                self.warnings.append(unknown_model_warning(job.model))
        errors = checker.errors(job.inputs)
        if not errors:
            return
        lines = self.field_lines.get(loc, {})
        for field, message, at in errors:
            line = lines.get(at, loc.line) if at else loc.line
            signature = (loc.file, line, field, message, job.model)
            if signature not in self.seen:
                self.seen.add(signature)
                self.problems.append(Problem(*signature))


def _coerce(value: str, prop: dict[str, Any]) -> Any:
    """A CSV cell as the schema's type when it clearly is one; otherwise the text unchanged."""
    kind = prop.get("type")
    text = value.strip()
    if kind == "integer" and _INTEGER.fullmatch(text):
        return int(text)
    if kind == "number":
        try:
            return int(text) if _INTEGER.fullmatch(text) else float(text)
        except ValueError:
            return value
    if kind == "boolean" and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if kind in ("array", "object", None) and text[:1] in ("[", "{"):
        try:  # a structured input written as JSON in its cell
            return json.loads(text)
        except ValueError:
            return value
    return value


def checker_for(model: str, schemas: Schemas | None = None) -> Checker:
    """The validator of a model's inputs (of "a JSON object" for a model in no catalogue)."""
    return Checker(schema_of(model, schemas))


def typed_csv(
    manifest: Manifest, checker_of: Callable[[str], Checker]
) -> tuple[Manifest, list[Problem]]:
    """Give CSV cells their row's model's schema types; report columns that no model of the
    file takes once, on the header line (a column one row's model lacks is that row's problem)."""
    row_model = {id(e): _row_model(e, manifest.job_model) for e in manifest.entries}
    checkers = {m: checker_of(m) for m in dict.fromkeys([manifest.job_model, *row_model.values()])}
    # every named column, even one whose cells are all empty (a typo must not go unnoticed)
    columns = dict.fromkeys("meta" if c.startswith("meta.") else c for c in manifest.lines)
    for entry in manifest.entries:
        if isinstance(entry.data, dict):
            columns.update(dict.fromkeys(entry.data))
    problems, drop = _header_problems(manifest, checkers), set()
    if problems:  # without a header the rows mean nothing: say only that
        return dataclasses.replace(manifest, entries=[]), problems
    if all(c.known for c in checkers.values()):
        declared = set().union(*(c.props for c in checkers.values()))
        drop = {c for c in columns if c not in declared | JOB_KEYS | {"model"}}
        first = next(iter(checkers.values()))
        name = str(manifest.path)
        problems = [
            Problem(name, 1, None, first.unknown(c).replace("field", "column", 1))
            for c in columns
            if c in drop
        ]
    entries = []
    for entry in manifest.entries:
        checker = checkers[row_model[id(entry)]]
        entries.append(_typed_row(entry, checker, drop))
    return dataclasses.replace(manifest, entries=entries), problems


def _header_problems(manifest: Manifest, checkers: dict[str, Checker]) -> list[Problem]:
    """A CSV without a `prompt` column whose models need one (or are in no catalogue) most
    likely lacks its header row (a model such as ace-step takes `tags` instead)."""
    header = list(manifest.lines)
    if "prompt" in header or not header:
        return []
    if all(c.known and "prompt" not in c.required for c in checkers.values()):
        return []
    found = ", ".join(repr(c) for c in header[:5])
    msg = f"no 'prompt' column: the first row must be a header naming the inputs (found {found})"
    return [Problem(str(manifest.path), 1, None, msg)]


def _row_model(entry: Entry, default: str) -> str:
    model = entry.data.get("model") if isinstance(entry.data, dict) else None
    return model if isinstance(model, str) and model.strip() else default


def _typed_row(entry: Entry, checker: Checker, drop: set[str]) -> Entry:
    data = entry.data
    typed = {
        k: p
        for k, p in checker.props.items()
        if isinstance(p, dict) and p.get("type") in _CELL_TYPES
    }
    if isinstance(data, dict) and (drop or typed.keys() & data.keys()):
        data = {
            k: _coerce(v, typed[k]) if k in typed and isinstance(v, str) else v
            for k, v in data.items()
            if k not in drop
        }
    return Entry(entry.kind, data, entry.source, entry.field_lines)


def check_values(
    values: dict[str, Any], checker: Checker, where: Location, what: str, model: str
) -> list[Problem]:
    """Problems of the values of defaults or --set fields `model` declares (checked once, not
    once per job); fields it does not declare are the caller's decision."""
    declared = {k: v for k, v in values.items() if k in checker.props}
    problems = []
    for field, message, _ in checker.errors(declared, partial=True):
        label = f"{what}.{field}" if field else what
        problems.append(Problem(where.file, where.line, label, message, model))
    return problems
