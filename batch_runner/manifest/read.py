"""Read a manifest file: pick the reader by the file's suffix, hand it the decoded text.

This is the only module here that touches the file system; the readers and everything after
them are pure.
"""

from __future__ import annotations

from pathlib import Path

from batch_runner.errors import ManifestError, Problem
from batch_runner.manifest.read_csv import read_csv
from batch_runner.manifest.read_jsonl import read_jsonl
from batch_runner.manifest.read_txt import read_txt
from batch_runner.manifest.read_yaml import read_yaml
from batch_runner.manifest.rows import Manifest

READERS = {
    ".yaml": read_yaml,
    ".yml": read_yaml,
    ".csv": read_csv,
    ".jsonl": read_jsonl,
    ".txt": read_txt,
}
MAX_FILE_BYTES = 512 * 1024 * 1024


def load_manifest(path: str | Path) -> Manifest:
    """Parse a manifest file; raise ManifestError listing every problem, each with file:line."""
    manifest, problems = read_manifest(path)
    if problems or manifest is None:
        raise ManifestError(problems)
    return manifest


def read_manifest(path: str | Path) -> tuple[Manifest | None, list[Problem]]:
    """Parse what can be parsed and return it with the problems found (None if nothing usable)."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        allowed = " ".join(READERS)
        return None, [Problem(str(path), None, None, f"unknown manifest type (allowed: {allowed})")]
    text, problem = _read_text(path)
    if problem is not None:
        return None, [problem]
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
