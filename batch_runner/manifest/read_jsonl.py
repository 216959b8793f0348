"""The JSON Lines reader of manifests: one job per line."""

from __future__ import annotations

import json
from pathlib import Path

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
