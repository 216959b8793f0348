"""Read a manifest file (YAML, CSV or JSON Lines) into entries that remember their file and line.

This is the only module here that touches the file system; everything after it is pure.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import Location

DEFAULT_MODEL = "bytedance/seedream-5/lite/text-to-image"
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".csv": "csv", ".jsonl": "jsonl"}
TOP_LEVEL_KEYS = ("model", "defaults", "repeat", "options", "jobs", "sweep")
MAX_DEPTH = 32  # deeper input values are refused: nobody needs them and they break json/recursion
MAX_FILE_BYTES = 512 * 1024 * 1024


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


class BadValue(Exception):
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
    from batch_runner.manifest.read_yaml import read_yaml  # here: it builds on this module

    reader = {"yaml": read_yaml, "csv": _read_csv, "jsonl": _read_jsonl}[fmt]
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
    )


def jsonable(value: Any, depth: int = 0) -> Any:
    """Check that a value is plain JSON data; dates become ISO strings (what the user meant)."""
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
        return empty_manifest(path, "csv", problems)
    if not entries and not problems:
        problems.append(Problem(name, 1, None, "no jobs (only a header row)"))
    return build_manifest(path, "csv", entries), problems


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
        data = check_entry_data(data, loc, "job", problems)
        if data is not None:
            entries.append(Entry("job", data, loc, {}))
    if not entries and not problems:
        return empty_manifest(path, "jsonl", problems)
    return build_manifest(path, "jsonl", entries), problems
