"""The text reader of manifests: one prompt per line; blank lines and `#` lines are skipped.

The model is the manifest default, which `--model` replaces (CONTRACT §3). The file is read a
line at a time, never whole: a first pass checks it (UTF-8, no NUL byte) and counts its
prompts, and its entries are read from the file again each time they are iterated (a
million-line manifest is never held in memory; the file must not change in between).
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from pathlib import Path

from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import Location
from batch_runner.manifest.rows import Entry, Manifest, build_manifest, empty_manifest

_UTF8_BOM = codecs.BOM_UTF8
UTF16 = "UTF-16 text (as spreadsheets save 'Unicode text'); save the file as UTF-8"
NUL = "a NUL byte: this is not UTF-8 text (UTF-16? a binary file?); save it as UTF-8"


class TextEntries:
    """The entries of a .txt manifest: a re-iterable sequence read from the file each time."""

    def __init__(self, path: Path, count: int, digest: str):
        self.path = path
        self.count = count
        self._digest = digest  # of the bytes checked: a later pass must read the same

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Entry]:
        name = str(self.path)
        sha = hashlib.sha256()
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                sha.update(raw)
                text = raw[len(_UTF8_BOM) :] if number == 1 and raw.startswith(_UTF8_BOM) else raw
                prompt = text.decode("utf-8", "replace").strip()
                if prompt and not prompt.startswith("#"):
                    yield Entry("job", prompt, Location(name, number), {})
        if sha.hexdigest() != self._digest:
            msg = "the file changed while it was being read; run the command again"
            raise ManifestError([Problem(name, None, None, msg)])


def read_txt(path: Path) -> tuple[Manifest | None, list[Problem]]:
    """Check the file line by line and count its prompts (its entries are read later)."""
    name = str(path)
    try:
        count, digest, problem = _scan(path)
    except FileNotFoundError:
        return None, [Problem(name, None, None, "no such file")]
    except OSError as exc:
        return None, [Problem(name, None, None, f"cannot read: {exc.strerror or exc}")]
    if problem is not None:
        return None, [problem]
    if not count:
        return empty_manifest(path, "txt", [])
    return build_manifest(path, "txt", TextEntries(path, count, digest)), []  # type: ignore[arg-type]


def _scan(path: Path) -> tuple[int, str, Problem | None]:
    """(prompts, sha256 of the bytes, the first problem): a NUL byte beats a decoding error,
    as a whole-file check would find it first."""
    name = str(path)
    count, nul, bad = 0, None, None
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            sha.update(raw)
            if number == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    msg = (
                        "UTF-16 text (as spreadsheets save 'Unicode text'); save the file as UTF-8"
                    )
                    return 0, "", Problem(name, 1, None, msg)
                raw = raw[len(_UTF8_BOM) :] if raw.startswith(_UTF8_BOM) else raw
            if nul is None and b"\0" in raw:
                msg = (
                    "a NUL byte: this is not UTF-8 text (UTF-16? a binary file?); save it as UTF-8"
                )
                nul = Problem(name, number, None, msg)
            try:
                prompt = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                if bad is None:
                    msg = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
                    bad = Problem(name, number, None, msg)
                continue
            if prompt and not prompt.startswith("#"):
                count += 1
    return count, sha.hexdigest(), nul or bad
