"""The CSV reader of manifests: a header row naming the inputs, one job per row."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batch_runner.errors import Problem
from batch_runner.jobs import Location
from batch_runner.manifest.rows import Entry, Manifest, build_manifest, empty_manifest

_CELL_END = re.compile(r"[,\r\n]")
_SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}


def read_csv(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
    name = str(path)
    problems: list[Problem] = []
    header: list[str] | None = None
    entries: list[Entry] = []
    for start, row in _rows(text, name, problems):
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
    if header is None:
        return (None, problems) if problems else empty_manifest(path, "csv", problems)
    if not entries and not problems:
        problems.append(Problem(name, 1, None, "no jobs (only a header row)"))
    # the header's columns (on line 1) for the checks that know the models (schema.typed_csv)
    lines = dict.fromkeys(header, 1)
    return build_manifest(path, "csv", entries, lines=lines), problems


class _Lines:
    """The text's lines as csv.reader takes them (ended by \\r, \\n or \\r\\n), keeping those
    of the row being read, so that a row can be checked for a quote that was never closed."""

    def __init__(self, text: str):
        self.raw: list[str] = []
        self._lines = io.StringIO(text, newline="")

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.raw.append(line)
            yield line


def _rows(text: str, name: str, problems: list[Problem]) -> Iterator[tuple[int, list[str]]]:
    """Each row with the line it starts on. csv.reader closes a quoted cell at any later quote
    and runs an unclosed one to the end of the file, silently merging rows: a row spanning
    lines (and the last row) is checked for that, and reported instead of read."""
    lines = _Lines(text)
    reader = csv.reader(lines)
    held: tuple[int, list[str], list[str]] | None = None  # the last row: EOF may be in a quote
    while True:
        start = reader.line_num + 1
        lines.raw = []
        try:
            row = next(reader, None)
        except csv.Error as exc:  # e.g. a cell over the field size limit: a runaway quote?
            if not _stray_quote(lines.raw, name, start, problems, cut=True):
                problems.append(Problem(name, reader.line_num or 1, None, f"CSV error: {exc}"))
            row = None
        if held is not None:
            last, last_row, last_raw = held
            if row is not None or not _stray_quote(last_raw, name, last, problems):
                yield last, last_row
            held = None
        if row is None:
            return
        if reader.line_num == start or not _stray_quote(lines.raw, name, start, problems):
            held = (start, row, lines.raw)


def _stray_quote(
    raw: list[str], name: str, start: int, problems: list[Problem], *, cut: bool = False
) -> bool:
    """Report a quoted cell of these lines (one row as csv.reader read it) that was most likely
    never closed: it runs to the end of the file, or it spans lines and its closing quote is
    followed by more text (the opening quote of a later cell closed it). `cut`: csv.reader
    stopped inside the row (a cell over its size limit)."""
    found = _unclosed_quote("".join(raw))
    if found is None:
        return False
    opened, closed = found
    line, end = _line_at(raw, start, opened), _line_at(raw, start, closed)
    if cut:  # csv.reader gave up on a cell this long
        runs = f"on past line {end} (longer than a cell may be)"
    elif closed is None:
        runs = "to the end of the file"
    else:
        runs = f"on into line {end}"
    msg = (
        f"unclosed quote: the quoted cell that starts on this line runs {runs}; close it "
        '(a quote inside a quoted cell is written "")'
    )
    problems.append(Problem(name, line, None, msg))
    return True


def _unclosed_quote(raw: str) -> tuple[int, int | None] | None:
    """(offset of the opening quote, offset of its closing quote or None at the end) of the
    first quoted cell that is not closed where its cell ends, as the default csv dialect reads
    cells; a closing quote followed by text on the cell's own line is left alone (csv.reader
    keeps the text: `"a" b` reads `a b`)."""
    i, n = 0, len(raw)
    while i < n:  # i: where a cell starts
        if raw[i] != '"':
            stop = _CELL_END.search(raw, i)
        else:
            j = i + 1
            while True:
                k = raw.find('"', j)
                if k < 0:
                    return i, None
                if raw.startswith('"', k + 1):  # "" is a quote inside the cell
                    j = k + 2
                    continue
                break
            after = raw[k + 1 : k + 2]
            if after not in ("", ",", "\r", "\n") and ("\n" in raw[i:k] or "\r" in raw[i:k]):
                return i, k
            stop = _CELL_END.search(raw, k + 1)
        if stop is None:
            return None
        i = stop.end()
    return None


def _line_at(raw: list[str], start: int, offset: int | None) -> int:
    """The line number of an offset into the joined lines (None: the last line)."""
    if offset is None:
        return start + len(raw) - 1
    for number, line in enumerate(raw, start):
        if offset < len(line):
            return number
        offset -= len(line)
    return start + len(raw) - 1


def _csv_header(row: list[str], name: str, line: int, problems: list[Problem]) -> list[str] | None:
    header = [cell.strip() for cell in row]
    while header and not header[-1]:
        header.pop()  # spreadsheets export empty trailing columns; cells under them must be empty
    if len(header) == 1 and (sep := next((s for s in _SEPARATORS if s in header[0]), None)):
        msg = (
            f"the header row is one column, {header[0]!r}: its columns seem to be separated "
            f"by {_SEPARATORS[sep]}; batch_runner reads comma-separated CSV (save it with commas)"
        )
        problems.append(Problem(name, line, None, msg))
        return None
    ok = True
    seen: set[str] = set()
    for i, col in enumerate(header, 1):
        if not col:
            problems.append(Problem(name, line, None, f"column {i} has no name in the header row"))
            ok = False
        elif col.startswith("meta.") and not col[5:].strip():
            problems.append(
                Problem(
                    name,
                    line,
                    None,
                    f"column {i} is 'meta.' with no name after it (write meta.NAME)",
                )
            )
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
