"""Local file inputs encoded as data URIs at submit time, one job at a time.

The manifest pipeline keeps a local file as a reference (path, sha256, bytes, media type; see
manifest/media.py); only here, just before the POST, are its bytes read and put inline, so a
folder of 10,000 pictures never sits in memory and the data is never stored. A file that
changed or vanished since its job was made is not sent: its job reports why.

`read_inline_body` reads each file through aiofiles a piece at a time, and hashes and encodes
each piece between reads, so the loop never stops for a whole file.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import aiofiles

from batch_runner.jobs import LOCAL_FILE
from batch_runner.manifest.media import is_file_ref


class InputChanged(Exception):
    """A local input file is not the one the job was made with."""


def has_files(inputs: dict[str, Any]) -> bool:
    return any(
        is_file_ref(v) or (isinstance(v, list) and any(is_file_ref(x) for x in v))
        for v in inputs.values()
    )


async def read_inline_body(inputs: dict[str, Any]) -> dict[str, Any]:
    """The submit body: every file reference replaced by a data URI of the file's bytes,
    read through aiofiles piece by piece."""
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if is_file_ref(value):
            out[name] = await _read_data_uri(value)
        elif isinstance(value, list) and any(is_file_ref(v) for v in value):
            out[name] = [await _read_data_uri(v) if is_file_ref(v) else v for v in value]
        else:
            out[name] = value
    return out


PIECE = 3 << 20  # 3 MiB read at a time: a multiple of 3, so pieces encode to base64 alone


async def _read_data_uri(ref: dict[str, Any]) -> str:
    path = ref[LOCAL_FILE]
    digest, encoded = hashlib.sha256(), []
    try:
        async with aiofiles.open(path, "rb") as fh:
            while piece := await fh.read(PIECE):
                digest.update(piece)
                encoded.append(base64.b64encode(piece))
    except OSError as exc:
        raise _unreadable(path, exc) from None
    _check(ref, digest.hexdigest())
    return f"data:{ref['media_type']};base64,{b''.join(encoded).decode('ascii')}"


def _unreadable(path: str, exc: OSError) -> InputChanged:
    if isinstance(exc, FileNotFoundError):
        return InputChanged(
            f"input file {path} is gone since the job was made; put it back and resume, "
            "or run the manifest again"
        )
    return InputChanged(f"input file {path}: cannot read ({exc.strerror or exc})")


def _check(ref: dict[str, Any], sha256: str) -> None:
    if sha256 != ref.get("sha256"):
        raise InputChanged(
            f"input file {ref[LOCAL_FILE]} changed since the job was made (its sha256 "
            "differs); not sent. Run the manifest again to make a job of the new file"
        )
