"""Read a manifest file (YAML, CSV or JSON Lines) into entries that remember their file and line.

This is the only module here that touches the file system; everything after it is pure.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import Location

DEFAULT_MODEL = "bytedance/seedream-5/lite/text-to-image"
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv", ".jsonl": "jsonl"}
TOP_LEVEL_KEYS = ("model", "defaults", "repeat", "options", "jobs", "sweep")
# Aliases may re-use a node this many extra times in total; beyond it is an alias bomb.
MAX_ALIAS_EXPANSION = 1_000_000
MAX_DEPTH = 32  # deeper input values are refused: nobody needs them and they break json/recursion
MAX_FILE_BYTES = 512 * 1024 * 1024

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# an anchor: '&' then a name, at the start of a token; without one there can be no alias
_ANCHOR = re.compile(r"(?:^|[\s,\[{])&[^\s,\[\]{}]")


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader with a quicker tag resolver (same results, fewer regex calls).

    Plain scalars starting with a letter that no implicit type uses (most prompts) skip the
    regular expressions; this halves the time to load a 100,000-job YAML file.
    """

    _first_chars = frozenset(k for k in _BaseLoader.yaml_implicit_resolvers if k is not None)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if self.yaml_path_resolvers or None in self.yaml_implicit_resolvers:
            return super().resolve(kind, value, implicit)
        if kind is yaml.ScalarNode:
            if implicit[0] and (value == "" or value[0] in self._first_chars):
                return super().resolve(kind, value, implicit)
            return self.DEFAULT_SCALAR_TAG
        if kind is yaml.SequenceNode:
            return self.DEFAULT_SEQUENCE_TAG
        return self.DEFAULT_MAPPING_TAG


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


class _Bad(Exception):
    """A value that cannot be used as job data; carries the reason."""


def load_manifest(path: str | Path) -> Manifest:
    """Parse a manifest file; raise ManifestError listing every problem, each with file:line."""
    manifest, problems = read_manifest(path)
    if problems or manifest is None:
        raise ManifestError(problems)
    return manifest


def read_manifest(path: str | Path) -> tuple[Manifest | None, list[Problem]]:
    """Parse what can be parsed and return it with the problems found (None if nothing usable)."""
    path = Path(path)
    name = str(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        allowed = " ".join(FORMATS)
        return None, [Problem(name, None, None, f"unknown manifest type (allowed: {allowed})")]
    text, problem = _read_text(path)
    if problem is not None:
        return None, [problem]
    reader = {"yaml": _read_yaml, "csv": _read_csv, "jsonl": _read_jsonl}[fmt]
    return reader(path, text)


def _read_text(path: Path) -> tuple[str, Problem | None]:
    name = str(path)
    try:
        if path.is_dir():
            return "", Problem(name, None, None, "is a directory, not a manifest file")
        if path.stat().st_size > MAX_FILE_BYTES:
            return "", Problem(name, None, None, f"file larger than {MAX_FILE_BYTES} bytes")
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", Problem(name, None, None, "no such file")
    except OSError as exc:
        return "", Problem(name, None, None, f"cannot read: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:start].count(b"\n") + 1
        msg = f"not UTF-8 text (byte 0x{raw[start]:02x}); save the file as UTF-8"
        return "", Problem(name, line, None, msg)
    return text, None


def _empty(path: Path, fmt: str, problems: list[Problem]) -> tuple[Manifest, list[Problem]]:
    problems.append(Problem(str(path), 1, None, "empty manifest"))
    return _manifest(path, fmt, entries=[]), problems


def _manifest(path: Path, fmt: str, entries: list[Entry], **top: Any) -> Manifest:
    return Manifest(
        path=path,
        format=fmt,
        model=top.get("model", DEFAULT_MODEL),
        defaults=top.get("defaults", {}),
        repeat=top.get("repeat", 1),
        options=top.get("options", {}),
        entries=entries,
        source=Location(str(path), None),
    )


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Check that a value is plain JSON data; dates become ISO strings (what the user meant)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if depth >= MAX_DEPTH:
        raise _Bad(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Bad(f"mapping keys must be strings, not {k!r}")
            out[k] = _jsonable(v, depth + 1)
        return out
    if isinstance(value, dt.date):
        return value.isoformat()
    raise _Bad(f"values of type {type(value).__name__} are not allowed")


def _check_entry_data(data: Any, loc: Location, what: str, problems: list[Problem]) -> Any:
    """Return JSON-clean data, or None (with a problem) when it is not a string or a mapping."""
    if not isinstance(data, str | dict):
        kind = "a prompt string or a mapping" if what == "job" else "a mapping"
        problems.append(Problem(loc.file, loc.line, None, f"a {what} must be {kind}"))
        return None
    if what == "sweep" and isinstance(data, str):
        problems.append(Problem(loc.file, loc.line, None, "a sweep must be a mapping"))
        return None
    try:
        return _jsonable(data)
    except _Bad as exc:
        problems.append(Problem(loc.file, loc.line, None, str(exc)))
        return None


# ---------------------------------------------------------------- YAML


def _read_yaml(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
    name = str(path)
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None and _ANCHOR.search(text):
            _check_aliases(root)
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(name, text, exc)]
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        return None, [Problem(name, line, None, f"YAML error: {exc.reason}")]
    except (yaml.YAMLError, RecursionError) as exc:
        return None, [Problem(name, None, None, f"YAML error: {_short(exc)}")]
    except _AliasError as exc:
        return None, [Problem(name, exc.line, None, str(exc))]
    if root is None or (isinstance(root, yaml.ScalarNode) and root.value == ""):
        return _empty(path, "yaml", problems)
    if isinstance(root, yaml.SequenceNode):
        entries = _yaml_entries(loader, root, "job", name, problems)
        if not entries and not problems:
            problems.append(Problem(name, 1, None, "no jobs (the list is empty)"))
        return _manifest(path, "yaml", entries), problems
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1
        msg = "a manifest must be a mapping (model, defaults, jobs, ...) or a list of jobs"
        return None, [Problem(name, line, None, msg)]
    return _yaml_top(path, loader, root, problems), problems


def _syntax_problem(name: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    """Name the line where the mistake most likely is, and the other line when there are two."""
    msg = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
    problem, context = exc.problem_mark, exc.context_mark
    line = problem.line + 1 if problem is not None else None
    if context is not None and (problem is None or not text[problem.index :].strip()):
        line = context.line + 1  # the file ended inside something opened there
    elif context is not None and context.line + 1 != line:
        msg += f" (started on line {context.line + 1})"
    return Problem(name, line, None, f"YAML syntax error: {msg}")


class _AliasError(Exception):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_aliases(root: yaml.Node) -> None:
    """Refuse recursive aliases and alias bombs by sizing the node graph with aliases expanded.

    Sizes are memoised per node, so this costs one pass over the distinct nodes however large
    the expansion would be.
    """
    sizes: dict[int, int] = {}
    started: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        nid = id(node)
        if finished:
            started.discard(nid)
            sizes[nid] = min(1 + sum(sizes[id(c)] for c in _children(node)), 1 << 62)
            continue
        if nid in sizes:
            continue
        if nid in started:
            raise _AliasError("recursive YAML alias", node.start_mark.line + 1)
        started.add(nid)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    if sizes[id(root)] - len(sizes) > MAX_ALIAS_EXPANSION:
        msg = (
            f"YAML aliases expand to {sizes[id(root)]:,} values (an alias bomb?); "
            f"the limit is {MAX_ALIAS_EXPANSION:,} re-used values"
        )
        raise _AliasError(msg, None)


def _construct(loader: Any, node: yaml.Node, name: str, problems: list[Problem]) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark or node.start_mark
        problems.append(Problem(name, mark.line + 1, None, f"YAML error: {exc.problem}"))
    except (yaml.YAMLError, RecursionError, TypeError, ValueError) as exc:
        problems.append(Problem(name, node.start_mark.line + 1, None, f"YAML error: {_short(exc)}"))
    return _FAILED


_FAILED = object()


def _key_lines(node: yaml.MappingNode, name: str, problems: list[Problem]) -> dict[str, int]:
    """Line of each plain key of a mapping node; a key written twice is a problem."""
    lines: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if key.value in lines:
            msg = f"'{key.value}' written twice (first on line {lines[key.value]})"
            problems.append(Problem(name, line, None, msg))
        else:
            lines[key.value] = line
    return lines


def _yaml_entries(
    loader: Any, node: yaml.Node, kind: str, name: str, problems: list[Problem]
) -> list[Entry]:
    if kind == "sweep" and isinstance(node, yaml.MappingNode):
        items = [node]  # one sweep written without the list around it
    elif isinstance(node, yaml.SequenceNode):
        items = node.value
    else:
        if not (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            line = node.start_mark.line + 1
            problems.append(Problem(name, line, "jobs" if kind == "job" else "sweep", "not a list"))
        return []
    entries = []
    for item in items:
        loc = Location(name, item.start_mark.line + 1)
        lines = _key_lines(item, name, problems) if isinstance(item, yaml.MappingNode) else {}
        data = _construct(loader, item, name, problems)
        if data is _FAILED:
            continue
        data = _check_entry_data(data, loc, kind, problems)
        if data is not None:
            entries.append(Entry(kind, data, loc, lines))
    return entries


def _yaml_top(path: Path, loader: Any, root: yaml.MappingNode, problems: list[Problem]) -> Manifest:
    name = str(path)
    lines = _key_lines(root, name, problems)
    top: dict[str, Any] = {}
    jobs: list[Entry] = []
    sweeps: list[Entry] = []
    for key_node, value_node in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        line = key_node.start_mark.line + 1
        if key == "jobs":
            jobs = _yaml_entries(loader, value_node, "job", name, problems)
        elif key == "sweep":
            sweeps = _yaml_entries(loader, value_node, "sweep", name, problems)
        elif key in TOP_LEVEL_KEYS:
            value = _construct(loader, value_node, name, problems)
            if value is not _FAILED:
                _top_value(key, value, Location(name, line), top, problems)
        else:
            allowed = ", ".join(TOP_LEVEL_KEYS)
            msg = f"unknown top-level key {key_node.value!r} (allowed: {allowed})"
            problems.append(Problem(name, line, None, msg))
    if not jobs and not sweeps and not problems:
        problems.append(Problem(name, lines.get("jobs", 1), None, "no jobs (add jobs: or sweep:)"))
    return _manifest(path, "yaml", jobs + sweeps, **top)


def _top_value(key: str, value: Any, loc: Location, top: dict, problems: list[Problem]) -> None:
    def bad(msg: str) -> None:
        problems.append(Problem(loc.file, loc.line, key, msg))

    if key == "model":
        if isinstance(value, str) and value.strip():
            top["model"] = value.strip()
        else:
            bad("must be a model path like " + DEFAULT_MODEL)
    elif key == "repeat":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            top["repeat"] = value
        else:
            bad(f"must be a whole number ≥ 1, not {value!r}")
    elif value is None:
        top[key] = {}
    elif not isinstance(value, dict):
        bad("must be a mapping")
    elif key == "defaults":
        try:
            top[key] = _jsonable(value)
        except _Bad as exc:
            bad(str(exc))
    else:
        top[key] = value  # options: passed through untouched


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


# ---------------------------------------------------------------- CSV


def _read_csv(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
    name = str(path)
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    entries: list[Entry] = []
    try:
        while True:
            start = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue  # blank lines and rows of empty cells (spreadsheets leave them)
            if header is None:
                header = _csv_header(row, name, start, problems)
                if header is None:
                    return None, problems
                continue
            entry = _csv_row(header, row, Location(name, start), problems)
            if entry is not None:
                entries.append(entry)
    except csv.Error as exc:
        problems.append(Problem(name, reader.line_num or 1, None, f"CSV error: {exc}"))
    if header is None:
        return _empty(path, "csv", problems)
    if not entries and not problems:
        problems.append(Problem(name, 1, None, "no jobs (only a header row)"))
    return _manifest(path, "csv", entries), problems


def _csv_header(row: list[str], name: str, line: int, problems: list[Problem]) -> list[str] | None:
    header = [cell.strip() for cell in row]
    ok = True
    seen: set[str] = set()
    for i, col in enumerate(header, 1):
        if not col:
            problems.append(Problem(name, line, None, f"column {i} has no name in the header row"))
            ok = False
        elif col in seen:
            problems.append(
                Problem(name, line, None, f"column {col!r} appears twice in the header")
            )
            ok = False
        seen.add(col)
    if "prompt" not in seen:
        found = ", ".join(repr(c) for c in header[:5])
        msg = (
            f"no 'prompt' column: the first row must be a header naming the inputs (found {found})"
        )
        problems.append(Problem(name, line, None, msg))
        ok = False
    return header if ok else None


def _csv_row(header: list[str], row: list[str], loc: Location, problems: list[Problem]):
    if len(row) > len(header):
        msg = f"row has {len(row)} cells but the header has {len(header)} columns"
        problems.append(Problem(loc.file, loc.line, None, msg))
        return None
    data: dict[str, Any] = {}
    meta: dict[str, str] = {}
    for col, cell in zip(header, row, strict=False):
        if not cell.strip():
            continue  # empty cell: use the default
        if col.startswith("meta."):
            meta[col[5:]] = cell
        elif col == "repeat":
            data["repeat"] = int(cell) if cell.strip().isdigit() else cell
        else:
            data[col] = cell
    if meta:
        data["meta"] = meta
    return Entry("job", data, loc, {})


# ---------------------------------------------------------------- JSONL


def _read_jsonl(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
    name = str(path)
    problems: list[Problem] = []
    entries: list[Entry] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        loc = Location(name, number)
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            msg = f"invalid JSON: {exc.msg} (column {exc.colno})"
            problems.append(Problem(name, number, None, msg))
            continue
        except RecursionError:
            problems.append(Problem(name, number, None, "invalid JSON: nested too deeply"))
            continue
        data = _check_entry_data(data, loc, "job", problems)
        if data is not None:
            entries.append(Entry("job", data, loc, {}))
    if not entries and not problems:
        return _empty(path, "jsonl", problems)
    return _manifest(path, "jsonl", entries), problems
