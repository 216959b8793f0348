"""The text reader of manifests: one prompt per line; blank lines and `#` lines are skipped.

The model is the manifest default, which `--model` replaces (CONTRACT §3).
"""

from __future__ import annotations

from pathlib import Path

from batch_runner.errors import Problem
from batch_runner.jobs import Location
from batch_runner.manifest.rows import Entry, Manifest, build_manifest, empty_manifest


def read_txt(path: Path, text: str) -> tuple[Manifest | None, list[Problem]]:
    name = str(path)
    entries = []
    for number, line in enumerate(text.split("\n"), 1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            entries.append(Entry("job", prompt, Location(name, number), {}))
    if not entries:
        return empty_manifest(path, "txt", [])
    return build_manifest(path, "txt", entries), []
