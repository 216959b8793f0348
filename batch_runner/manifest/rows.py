"""What every manifest reader produces: entries that remember their file and line, and the
checks all readers share (plain JSON data, a usable repeat count)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_runner.errors import Problem
from batch_runner.jobs import Location

DEFAULT_MODEL = "bytedance/seedream-5/lite/text-to-image"
MAX_DEPTH = 32  # deeper input values are refused: nobody needs them and they break json/recursion


@dataclass(frozen=True)
class Entry:
    """One item of `jobs:`/`sweep:`, one CSV row or one JSONL line, with where it came from."""

    kind: str  # "job" or "sweep"
    data: dict[str, Any] | str
    source: Location
    field_lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: top-level settings plus its entries in order (jobs first, then sweeps)."""

    path: Path
    format: str
    model: str
    defaults: dict[str, Any]
    repeat: int
    options: dict[str, Any]
    entries: list[Entry]
    source: Location
    model_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # MODEL -> inputs
    lines: dict[str, int] = field(default_factory=dict)  # line of each top-level key
    default_model: str | None = None  # `defaults: {model: M}`: beats --model, not a job's own
    stages: tuple[Any, ...] = ()  # `stages:` of a pipeline (manifest/stages.py: Stage)
    sample: int | None = None  # top-level `sample: N`: N combinations of all entries' (sampling.py)
    seed: int | str | None = None  # top-level `seed: S`: the sample's and --pilot's

    @property
    def options_origin(self) -> str:
        """Where the run options of `options:` were written, for errors: `FILE:LINE: options`."""
        line = self.lines.get("options")
        return f"{self.path}:{line}: options" if line else f"{self.path}: options"

    @property
    def job_model(self) -> str:
        """The model of the jobs that name none: `defaults`' model, else `model:` (which
        `--model` replaces), else the default model."""
        return self.default_model or self.model


class BadValue(Exception):
    """A value that cannot be used as job data; carries the reason."""


def empty_manifest(path: Path, fmt: str, problems: list[Problem]) -> tuple[Manifest, list[Problem]]:
    problems.append(Problem(str(path), 1, None, "empty manifest"))
    return build_manifest(path, fmt, entries=[]), problems


def build_manifest(path: Path, fmt: str, entries: list[Entry], **top: Any) -> Manifest:
    return Manifest(
        path=path,
        format=fmt,
        model=top.get("model", DEFAULT_MODEL),
        defaults=top.get("defaults", {}),
        repeat=top.get("repeat", 1),
        options=top.get("options", {}),
        entries=entries,
        source=Location(str(path), None),
        model_defaults=top.get("model_defaults", {}),
        lines=top.get("lines", {}),
        default_model=top.get("default_model"),
        stages=top.get("stages", ()),
        sample=top.get("sample"),
        seed=top.get("seed"),
    )


def jsonable(value: Any, depth: int = 0) -> Any:
    """Check that a value is plain JSON data; dates become ISO strings (what the user meant)."""
    if isinstance(value, float) and not math.isfinite(value):  # NaN in JSON breaks readers
        raise BadValue(f"{value} is not a number JSON can carry (write a number or null)")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if depth >= MAX_DEPTH:
        raise BadValue(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise BadValue(f"mapping keys must be strings, not {k!r}")
            out[k] = jsonable(v, depth + 1)
        return out
    if isinstance(value, dt.date):
        return value.isoformat()
    raise BadValue(f"values of type {type(value).__name__} are not allowed")


def check_entry_data(data: Any, loc: Location, what: str, problems: list[Problem]) -> Any:
    """Return JSON-clean data, or None (with a problem) when it is not a string or a mapping."""
    if not isinstance(data, str | dict):
        kind = "a prompt string or a mapping" if what == "job" else "a mapping"
        problems.append(Problem(loc.file, loc.line, None, f"a {what} must be {kind}"))
        return None
    if what == "sweep" and isinstance(data, str):
        problems.append(Problem(loc.file, loc.line, None, "a sweep must be a mapping"))
        return None
    try:
        return jsonable(data)
    except BadValue as exc:
        problems.append(Problem(loc.file, loc.line, None, str(exc)))
        return None


def short_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def repeat_problem(value: Any) -> str | None:
    """Why `value` cannot be a repeat count, or None when it is a whole number ≥ 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return None
    return f"must be a whole number ≥ 1, not {value!r}"
