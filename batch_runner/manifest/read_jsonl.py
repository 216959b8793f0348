"""The JSON Lines reader of manifests: one job per line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from batch_runner.errors import Problem
from batch_runner.jobs import Location
from batch_runner.manifest.rows import (
    Entry,
    Manifest,
    build_manifest,
    check_entry_data,
    empty_manifest,
)


def read_jsonl(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
    name = str(path)
    problems: list[Problem] = []
    items: list[tuple[int, Any]] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            items.append((number, _loads(line)))
        except json.JSONDecodeError as exc:
            msg = f"invalid JSON: {exc.msg} (column {exc.colno})"
            problems.append(Problem(name, number, None, msg))
        except _WrittenTwice as exc:
            problems.append(Problem(name, number, None, f"{str(exc)!r} written twice"))
        except RecursionError:
            problems.append(Problem(name, number, None, "invalid JSON: nested too deeply"))
    return read_items(path, items, problems)


class _WrittenTwice(Exception):
    """A key written twice in one object (json.loads would silently keep the last)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        raise _WrittenTwice(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return obj


_loads = json.JSONDecoder(object_pairs_hook=_object).decode


def read_items(
    path: Path, items: Iterable[tuple[int, Any]], problems: list[Problem] | None = None
) -> tuple[Manifest | None, list[Problem]]:
    """Jobs given as (number, prompt string or mapping) pairs: JSONL lines, or the Python API's
    list (where `path` only names it in messages)."""
    problems = [] if problems is None else problems
    entries: list[Entry] = []
    for number, data in items:
        loc = Location(str(path), number)
        clean = check_entry_data(data, loc, "job", problems)
        if clean is not None:
            entries.append(Entry("job", clean, loc, {}))
    if not entries and not problems:
        return empty_manifest(path, "jsonl", problems)
    return build_manifest(path, "jsonl", entries), problems
