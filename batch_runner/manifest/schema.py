"""Validate jobs against the bundled JSON Schema of their model; problems carry file:line.

Also the schema-driven steps of the offline pipeline (manifest/load.py): typing CSV cells and
checking `defaults:` and `--set` values once.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

from batch_runner.errors import Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.expand import JOB_KEYS
from batch_runner.manifest.rows import Entry, Manifest

SCHEMA_DIR = Path(__file__).parent / "schemas"
# top-level keywords field-by-field checking understands; any other means "validate whole"
_SIMPLE_KEYWORDS = {"type", "title", "description", "properties", "required", "$schema", "$id"}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment"}
_PLAIN = {"string": str, "integer": int, "number": int | float, "object": dict, "array": list}
# a field stating only a type and an enum is checked by membership; jsonschema explains misses
_EXACT = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

Error = tuple[str | None, str, str | None]  # (field shown, message, field whose line to use)


@functools.cache
def _bundled() -> dict[str, dict[str, Any]]:
    schemas = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        schemas[data["model"]] = data["input"]
    return schemas


def load_schema(model: str) -> dict[str, Any] | None:
    """The input JSON Schema of a known model (a fresh copy), or None for an unknown model."""
    schema = _bundled().get(model)
    return json.loads(json.dumps(schema)) if schema is not None else None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error: Any) -> str:
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{_show(error.instance)} is not one of the allowed values (allowed: {allowed})"
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
        self.schema = schema or {
            "type": "object",
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string"}},
        }
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
        return ", ".join([*self.props, *sorted(JOB_KEYS - {"vars"})])

    def unknown(self, name: str) -> str:
        guess = difflib.get_close_matches(name, list(self.props), n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return f"unknown field {name!r} (allowed: {self.allowed()}){hint}"

    def errors(self, inputs: Any, *, partial: bool = False) -> list[Error]:
        """Every problem of one job's inputs; `partial` skips required fields (for defaults)."""
        if not isinstance(inputs, dict):
            return [(None, "inputs must be a mapping", None)]
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
    jobs: list[JobSpec],
    schemas: dict[str, dict[str, Any] | None] | None = None,
    field_lines: dict[Location, dict[str, int]] | None = None,
) -> tuple[list[Problem], list[str]]:
    """Check every job against its model's schema; return (problems, warnings).

    `schemas` maps model → schema to use instead of the bundled ones (None: unknown model);
    `field_lines` (job source → line of each field) lets a problem name its field's own line.
    A problem repeated by many jobs from the same line is reported once.
    """
    field_lines = field_lines or {}
    checkers: dict[str, Checker] = {}
    warnings: list[str] = []
    problems: list[Problem] = []
    seen: set[tuple] = set()
    for job in jobs:
        checker = checkers.get(job.model)
        if checker is None:
            if schemas is not None and job.model in schemas:
                schema = schemas[job.model]
            else:
                schema = _bundled().get(job.model)
            if schema is None:
                warnings.append(
                    f"unknown model '{job.model}': inputs not validated beyond a prompt string"
                )
            checker = checkers[job.model] = Checker(schema)
        loc = job.source or Location("<jobs>")
        lines = field_lines.get(loc, {})
        for field, message, at in checker.errors(job.inputs):
            signature = (loc.file, lines.get(at, loc.line) if at else loc.line, field, message)
            if signature not in seen:
                seen.add(signature)
                problems.append(Problem(*signature))
    return problems, warnings


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
    return value


def checker_for(model: str) -> Checker:
    """The validator of a model's inputs (of a prompt string alone for an unknown model)."""
    return Checker(_bundled().get(model))


def typed_csv(manifest: Manifest, checker: Checker) -> tuple[Manifest, list[Problem]]:
    """Give CSV cells their schema types and report unknown columns once, on the header line."""
    if not checker.known:
        return manifest, []
    columns: dict[str, None] = dict.fromkeys(manifest.columns)  # a named empty column too
    for entry in manifest.entries:
        if isinstance(entry.data, dict):
            columns.update(dict.fromkeys(entry.data))
    unknown = [c for c in columns if c not in checker.props and c not in JOB_KEYS]
    name = str(manifest.path)
    problems = [
        Problem(name, 1, None, checker.unknown(c).replace("field", "column", 1)) for c in unknown
    ]
    typed = {k: p for k, p in checker.props.items() if p.get("type") in ("integer", "number")}
    typed |= {k: p for k, p in checker.props.items() if p.get("type") == "boolean"}
    drop = set(unknown)
    entries = []
    for entry in manifest.entries:
        data = entry.data
        if isinstance(data, dict) and (drop or typed.keys() & data.keys()):
            data = {
                k: _coerce(v, typed[k]) if k in typed and isinstance(v, str) else v
                for k, v in data.items()
                if k not in drop
            }
        entries.append(Entry(entry.kind, data, entry.source, entry.field_lines))
    return dataclasses.replace(manifest, entries=entries), problems


def known_keys(
    values: dict[str, Any], checker: Checker, where: Location, what: str
) -> tuple[dict[str, Any], list[Problem]]:
    """Check defaults or --set values once (not once per job); drop the unknown fields."""
    problems = []
    for field, message, _ in checker.errors(values, partial=True):
        label = f"{what}.{field}" if field else what
        problems.append(Problem(where.file, where.line, label, message))
    kept = {k: v for k, v in values.items() if not checker.known or k in checker.props}
    return kept, problems
