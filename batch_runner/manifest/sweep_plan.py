"""A sweep entry's plan: its fixed inputs, its axes (lists, vars, zips, folder globs) in written
order, its excludes and its sample; combinations are numbered and built one at a time, never
the whole product at once (manifest/expand.py turns them into jobs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

from batch_runner.manifest.media import glob_files, is_files_axis
from batch_runner.manifest.naming import template_tokens
from batch_runner.manifest.rows import Entry
from batch_runner.manifest.sampling import DEFAULT_SEED, draw, sample_problem, seed_problem, unrank


class Builder(Protocol):
    """What a plan needs of expand.py's job builder (named here: no import back into expand)."""

    def _extras(self, entry: Entry, data: dict[str, Any]) -> tuple[int, dict, bool]: ...

    warnings: list[str]

    def problem(self, entry: Entry, field: str | None, message: str) -> None: ...


SWEEP_KEYS = frozenset({"repeat", "meta", "vars", "zip", "exclude", "sample"})
Axis = list[tuple[dict[str, Any], dict[str, Any]]]  # each choice: (inputs part, vars part)


class SweepPlan:
    """A sweep entry checked and split into fixed inputs, axes (in written order) and excludes."""

    def __init__(self, entry: Entry, builder: Builder):
        self.entry = entry
        self.builder = builder
        data: dict[str, Any] = entry.data  # type: ignore[assignment]
        self.ok = True
        self.repeat, self.meta, self.ok = builder._extras(entry, data)
        self.fixed: dict[str, Any] = {}
        self.axes: list[Axis] = []
        self.sample, self.seed = self._sampling(data)
        reserved = reserved_keys(data)
        fields = {k: v for k, v in data.items() if k not in reserved}
        used = set().union(*(placeholders(v) for v in fields.values()))
        var_names: set[str] = set()
        for key, value in data.items():
            if key == "vars":
                var_names |= self._add_vars(value)
            elif key == "zip":
                var_names |= self._add_zip(value, fields, used)
            elif key not in reserved:
                if is_files_axis(value):
                    value = self._folder(key, value)
                if isinstance(value, list):
                    self.axes.append([({key: v}, {}) for v in value])
                else:
                    self.fixed[key] = value
        self.excludes = self._read_excludes(data.get("exclude"), set(fields) | var_names)
        for field, value in fields.items():
            for name in sorted(placeholders(value) - var_names):
                known = f"vars: {', '.join(sorted(var_names))}" if var_names else "no vars: given"
                self.bad(field, f"unknown placeholder {{{name}}} ({known}; {{{{ }}}} for braces)")

    def bad(self, field: str | None, message: str) -> None:
        self.builder.problem(self.entry, field, message)
        self.ok = False

    @property
    def size(self) -> int:
        """Combinations in the whole product (excluded ones too); never built."""
        return math.prod(len(axis) for axis in self.axes)

    def combo(self, number: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Combination `number` of the product (itertools.product's order) as (inputs, vars);
        None when `exclude:` leaves it out."""
        inputs = dict(self.fixed)
        variables: dict[str, Any] = {}
        for axis, at in zip(self.axes, unrank(number, [len(a) for a in self.axes]), strict=True):
            part_inputs, part_vars = axis[at]
            inputs.update(part_inputs)
            variables.update(part_vars)
        return None if self.excluded(inputs, variables) else (inputs, variables)

    def chosen(self) -> range | list[int]:
        """The combinations this entry keeps: all, or its `sample:` (drawn once)."""
        if self.sample is None:
            return range(self.size)
        if self._drawn is None:
            self._drawn, complete = draw(self.size, self.sample, self.seed, self._kept)
            if not complete:
                self.builder.warnings.append(
                    f"{self.entry.source}: sample: {self.sample}: most combinations are "
                    f"excluded; kept {len(self._drawn)}"
                )
        return self._drawn

    def _kept(self, number: int) -> bool:
        return self.combo(number) is not None

    def _sampling(self, data: dict[str, Any]) -> tuple[int | None, Any]:
        """`sample: N` and its `seed: S` (a list `seed:` stays the model's input axis)."""
        self._drawn: list[int] | None = None
        if "sample" not in data:
            return None, None
        sample, seed = data["sample"], data.get("seed") if "seed" in reserved_keys(data) else None
        for key, problem in (("sample", sample_problem(sample)), ("seed", seed_problem(seed))):
            if problem is not None and (key == "sample" or seed is not None):
                self.bad(key, problem)
        return sample, DEFAULT_SEED if seed is None else seed

    def _folder(self, key: str, value: dict[str, Any]) -> list[str]:
        """A folder sweep axis: one value per matching file, sorted; none is a problem."""
        pattern = value["files"]
        if not isinstance(pattern, str) or not pattern.strip():
            self.bad(key, f"files: must be a glob pattern such as 'stills/*.png', not {pattern!r}")
            return []
        found = list(files_of(self.entry, value))
        if not found:
            where = Path(self.entry.source.file).parent.resolve()
            self.bad(key, f"no file matches {pattern!r} (relative to {where})")
        return found

    def _add_vars(self, value: Any) -> set[str]:
        if value is None:
            return set()
        if not isinstance(value, dict):
            self.bad("vars", "must be a mapping of name: [values]")
            return set()
        for name, values in value.items():
            choices = values if isinstance(values, list) else [values]
            self.axes.append([({}, {name: v}) for v in choices])
        return set(value)

    def _add_zip(self, value: Any, fields: dict[str, Any], used: set[str]) -> set[str]:
        """Add one axis whose lists advance together; keys used as {placeholders} are vars."""
        if not isinstance(value, dict) or not value:
            self.bad("zip", "must be a mapping of name: [values] with equal lengths")
            return set()
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if -1 in lengths or len(lengths) != 1:
            sizes = ", ".join(
                f"{k}: {len(v) if isinstance(v, list) else 'not a list'}" for k, v in value.items()
            )
            self.bad("zip", f"lists must have equal lengths ({sizes})")
            return set()
        for name in value:
            if name in fields:
                self.bad("zip", f"{name!r} is both in zip: and a field of the sweep")
        var_names = {name for name in value if name in used}
        choices = []
        for i in range(lengths.pop()):
            inputs = {k: v[i] for k, v in value.items() if k not in var_names}
            variables = {k: v[i] for k, v in value.items() if k in var_names}
            choices.append((inputs, variables))
        self.axes.append(choices)
        return var_names

    def _read_excludes(self, value: Any, names: set[str]) -> list[dict[str, Any]]:
        if value is None:
            return []
        rules = [value] if isinstance(value, dict) else value
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            self.bad("exclude", "must be a list of mappings like {style: bauhaus, resolution: 3K}")
            return []
        zip_names = set()
        for axis in self.axes:
            for inputs, variables in axis[:1]:
                zip_names |= set(inputs) | set(variables)
        for rule in rules:
            for name in rule:
                if name not in names | zip_names:
                    self.bad("exclude", f"{name!r} is not a field or var of this sweep")
        return rules

    def excluded(self, inputs: dict[str, Any], variables: dict[str, Any]) -> bool:
        for rule in self.excludes:
            if all(
                variables[k] == v if k in variables else inputs.get(k, _MISSING) == v
                for k, v in rule.items()
            ):
                return True
        return False


_MISSING = object()


def reserved_keys(data: dict[str, Any]) -> frozenset[str]:
    """A sweep entry's keys that are no inputs: with `sample:`, a scalar `seed:` is its seed."""
    if "sample" in data and not isinstance(data.get("seed"), list):
        return SWEEP_KEYS | {"seed"}
    return SWEEP_KEYS


def files_of(entry: Entry, value: dict[str, Any]) -> tuple[str, ...]:
    pattern = value["files"]
    if not isinstance(pattern, str) or not pattern.strip():
        return ()
    return glob_files(str(Path(entry.source.file).parent), pattern)


def parse_template(text: str) -> list[str | tuple[str, str | None]]:
    """Split a sweep string into literal text and (name, format spec) placeholders.

    A lone brace or bracket is text here (name templates refuse braces and use brackets).
    """
    return [
        (token.text, token.spec) if token.kind == "field" else token.text
        for token in template_tokens(text, hyphens=False)
    ]


def placeholders(value: Any) -> set[str]:
    strings = value if isinstance(value, list) else [value]
    names: set[str] = set()
    for s in strings:
        if isinstance(s, str) and "{" in s:
            names.update(p[0] for p in parse_template(s) if isinstance(p, tuple))
    return names
