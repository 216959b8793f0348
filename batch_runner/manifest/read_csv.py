"""The CSV reader of manifests: a header row naming the inputs, one job per row."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from batch_runner.errors import Problem
from batch_runner.jobs import Location
from batch_runner.manifest.rows import Entry, Manifest, build_manifest, empty_manifest


def read_csv(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
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
    # the header's columns (on line 1) for the checks that know the models (schema.typed_csv)
    lines = dict.fromkeys(header, 1)
    return build_manifest(path, "csv", entries, lines=lines), problems


def _csv_header(row: list[str], name: str, line: int, problems: list[Problem]) -> list[str] | None:
    header = [cell.strip() for cell in row]
    while header and not header[-1]:
        header.pop()  # spreadsheets export empty trailing columns; cells under them must be empty
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
    return header if ok else None


def _csv_row(header: list[str], row: list[str], loc: Location, problems: list[Problem]):
    if any(cell.strip() for cell in row[len(header) :]):
        msg = f"row has {len(row)} cells but the header names {len(header)} columns"
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
