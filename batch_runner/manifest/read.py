"""Read a manifest file: pick the reader by the file's suffix, hand it the decoded text.

This is the only module here that touches the file system; the readers and everything after
them are pure.
"""

from __future__ import annotations

import codecs
import stat
from pathlib import Path

from batch_runner.errors import ManifestError, Problem
from batch_runner.manifest.read_csv import read_csv
from batch_runner.manifest.read_jsonl import read_jsonl
from batch_runner.manifest.read_txt import NUL, UTF16, read_txt
from batch_runner.manifest.read_yaml import read_yaml
from batch_runner.manifest.rows import Manifest

READERS = {
    ".yaml": read_yaml,
    ".yml": read_yaml,
    ".csv": read_csv,
    ".jsonl": read_jsonl,
    ".txt": read_txt,  # given the path alone (see read_manifest)
}
MAX_FILE_BYTES = 512 * 1024 * 1024
_ALLOWED = "allowed: " + " ".join(READERS)
_HINTS = {  # likely mistakes
    ".json": "; a file of one JSON job per line is .jsonl",
    ".tsv": "; save it as comma-separated .csv",
}


def load_manifest(path: str | Path) -> Manifest:
    """Parse a manifest file; raise ManifestError listing every problem, each with file:line."""
    manifest, problems = read_manifest(path)
    if problems or manifest is None:
        raise ManifestError(problems)
    return manifest


def read_manifest(path: str | Path) -> tuple[Manifest | None, list[Problem]]:
    """Parse what can be parsed and return it with the problems found (None if nothing usable)."""
    path = Path(path)
    # first: a missing file is missing whatever its name says
    problem = _not_a_file(path) or _unknown_type(path)
    if problem is None and path.suffix.lower() == ".txt":  # read a line at a time, never whole
        return read_txt(path)
    if problem is None:
        text, problem = _read_text(path)
        if problem is None:
            return READERS[path.suffix.lower()](path, text)
    return None, [problem]


def _not_a_file(path: Path) -> Problem | None:
    name = str(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return Problem(name, None, None, "no such file")
    except OSError as exc:
        return Problem(name, None, None, f"cannot read: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        return Problem(name, None, None, "is a directory, not a manifest file")
    if stat.S_ISREG(st.st_mode) and st.st_size > MAX_FILE_BYTES:
        return Problem(name, None, None, f"file larger than {MAX_FILE_BYTES} bytes")
    return None


def _unknown_type(path: Path) -> Problem | None:
    suffix = path.suffix.lower()
    if suffix in READERS:
        return None
    hint = _HINTS.get(suffix, "")
    return Problem(str(path), None, None, f"unknown manifest type ({_ALLOWED}){hint}")


def _read_text(path: Path) -> tuple[str, Problem | None]:
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", Problem(name, None, None, "no such file")
    except OSError as exc:
        return "", Problem(name, None, None, f"cannot read: {exc.strerror or exc}")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "", Problem(name, 1, None, UTF16)
    nul = raw.find(b"\0")
    if nul >= 0:  # no manifest format allows one: UTF-16 without its BOM, or not text at all
        line = raw[:nul].count(b"\n") + 1
        return "", Problem(name, line, None, NUL)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:start].count(b"\n") + 1
        msg = f"not UTF-8 text (byte 0x{raw[start]:02x}); save the file as UTF-8"
        return "", Problem(name, line, None, msg)
    return text, None
