"""Variants and wildcards of an entry's string inputs turned into sweep axes (`vars`).

`A {red|blue} __animal__` becomes the template `A {prompt_1} {animal}` with the vars
`prompt_1: [red, blue]` and `animal: [<the lines of wildcards/animal.txt>]`, so everything a
sweep does with vars follows: one job per combination, `exclude`, sampling, the report's grid
and `{name}` in name templates. A wildcard's axis is named after it (`__colors/warm__`:
`colors_warm`), a variant after its field and its number there (`prompt_1`, `prompt_2`).

A `jobs:` entry (a prompt string, a CSV row, a text line...) that holds a variant becomes a
sweep of its own, its other values kept as they are: lists as one value, braces as written
(its `{name}` is no placeholder). In a sweep's list, a string with a variant adds each of its
texts to the list. Media fields (their model's schema), URLs, `model`, `meta` and `zip` are
never read as variants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from batch_runner.errors import Problem
from batch_runner.manifest.media import is_files_axis
from batch_runner.manifest.rows import Entry, Manifest
from batch_runner.manifest.variants import (
    Group,
    VariantError,
    Wildcards,
    expand_all,
    has_dynamic,
    split,
    wildcards_beside,
)

MediaFields = Callable[[str], Collection[str]]  # a model's media fields (never variants)
_NOT_INPUTS = frozenset({"repeat", "meta", "vars", "zip", "exclude", "sample", "model"})
_NON_WORD = re.compile(r"\W+")


def lift_entries(
    manifest: Manifest, media: MediaFields | None = None
) -> tuple[list[Entry], list[Problem]]:
    """The manifest's entries with their variants as vars axes; an entry whose variant cannot
    be made (a missing wildcard file...) is left out, with a problem at its field's line."""
    lifter = Lifter(manifest, media or (lambda model: ()))
    entries = [e for e in (lifter.lift(entry) for entry in manifest.entries) if e is not None]
    return entries, lifter.problems


class Lifter:
    def __init__(self, manifest: Manifest, media: MediaFields):
        self.m = manifest
        self.media = media
        self.problems: list[Problem] = []
        self._wildcards: dict[str, Wildcards] = {}

    def lift(self, entry: Entry) -> Entry | None:
        if isinstance(entry.data, str) and not _dynamic(entry.data, entry.kind):
            return entry  # a plain prompt (most lines of a big .txt): nothing to lift
        data = {"prompt": entry.data} if isinstance(entry.data, str) else entry.data
        skip = self._skipped(data)
        dynamic = [k for k, v in data.items() if k not in skip and _dynamic(v, entry.kind)]
        if not dynamic:
            return entry
        if entry.kind != "sweep" and any(
            k in ("zip", "exclude") or is_files_axis(v) for k, v in data.items()
        ):
            return entry  # refused as it is (expand.py says why)
        wildcards = self._wildcards_of(entry)
        try:
            if entry.kind == "sweep":
                return replace(entry, data=_sweep(data, dynamic, wildcards))
            return replace(entry, kind="sweep", data=_job(data, dynamic, wildcards))
        except VariantError as exc:
            field = next((k for k in dynamic if _fails(data[k], wildcards)), dynamic[0])
            line = entry.field_lines.get(field, entry.source.line)
            self.problems.append(Problem(entry.source.file, line, field, str(exc)))
            return None

    def _skipped(self, data: dict[str, Any]) -> set[str]:
        """Keys never read as variants: the entry's own words and its models' media fields."""
        model = data.get("model", self.m.job_model)
        models = model if isinstance(model, list) else [model]
        skip = set(_NOT_INPUTS)
        for name in models:
            if isinstance(name, str):
                skip.update(self.media(name))
        if "sample" in data and not isinstance(data.get("seed"), list):
            skip.add("seed")  # the sampling seed (expand.py)
        return skip

    def _wildcards_of(self, entry: Entry) -> Wildcards:
        found = self._wildcards.get(entry.source.file)
        if found is None:
            found = self._wildcards[entry.source.file] = wildcards_beside(entry.source.file)
        return found


def _dynamic(value: Any, kind: str) -> bool:
    if isinstance(value, str):
        return has_dynamic(value) and not value.startswith(("http://", "https://", "data:"))
    if isinstance(value, list) and kind == "sweep":
        return any(_dynamic(v, kind) for v in value)
    return False


def _fails(value: Any, wildcards: Wildcards) -> bool:
    try:
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                expand_all(text, wildcards)
    except VariantError:
        return True
    return False


def _sweep(data: dict[str, Any], dynamic: list[str], wildcards: Wildcards) -> dict[str, Any]:
    axes: dict[str, list[str]] = {}
    taken = _names_in(data)
    out = {}
    for key, value in data.items():
        if key not in dynamic:
            out[key] = value
        elif isinstance(value, list):  # each text of a string with variants joins the list
            out[key] = [t for v in value for t in (_texts(v, wildcards))]
        else:
            out[key] = _template(key, value, wildcards, axes, taken, escape=False)
    return _with_vars(out, axes)


def _job(data: dict[str, Any], dynamic: list[str], wildcards: Wildcards) -> dict[str, Any]:
    """A job entry as a sweep: its variants are the axes, every other value one choice."""
    axes: dict[str, list[str]] = {}
    taken = _names_in(data)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("repeat", "meta"):
            out[key] = value
        elif key == "vars":
            out[key] = {k: [v] for k, v in value.items()} if isinstance(value, dict) else value
        elif key in dynamic:
            out[key] = _template(key, value, wildcards, axes, taken, escape=True)
        elif isinstance(value, str):
            out[key] = _escape(value)  # a job's braces are text, not placeholders
        elif isinstance(value, list):
            out[key] = [value]  # a list input is one value, not an axis
        else:
            out[key] = value
    return _with_vars(out, axes)


def _texts(value: Any, wildcards: Wildcards) -> list[Any]:
    if isinstance(value, str) and _dynamic(value, "sweep"):
        return expand_all(value, wildcards)
    return [value]


def _template(
    field: str,
    text: str,
    wildcards: Wildcards,
    axes: dict[str, list[str]],
    taken: set[str],
    *,
    escape: bool,
) -> str:
    """The string with each variant replaced by the `{name}` of its new axis."""
    out, n = [], 0
    for part in split(text, wildcards):
        if isinstance(part, str):
            out.append(_escape(part) if escape else part)
            continue
        if part.wildcard is None:
            n += 1
        name = _fresh(_axis_name(field, part, n), taken)
        axes[name] = list(part.values)
        out.append("{" + name + "}")
    return "".join(out)


def _axis_name(field: str, group: Group, n: int) -> str:
    if group.wildcard is None:
        return f"{_NON_WORD.sub('_', field)}_{n}"
    name = _NON_WORD.sub("_", group.wildcard).strip("_") or "wildcard"
    return name if not name[0].isdigit() else f"w{name}"


def _fresh(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`... when a field, var or earlier axis has it."""
    found, i = name, 1
    while found in taken:
        i += 1
        found = f"{name}_{i}"
    taken.add(found)
    return found


def _names_in(data: dict[str, Any]) -> set[str]:
    names = set(data)
    for key in ("vars", "zip"):
        if isinstance(data.get(key), dict):
            names |= set(data[key])
    return names


def _with_vars(data: dict[str, Any], axes: dict[str, list[str]]) -> dict[str, Any]:
    variables = data.get("vars")
    if variables is None:
        variables = {}
    if isinstance(variables, dict):  # not a mapping: the sweep says so
        data["vars"] = {**variables, **axes}
    return data


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")
