"""Media input values (CONTRACT §1, §3): what a value of an image/video/audio field is, and the
checks made on it before anything is sent.

A value is an `https://` URL (sent as is), a `data:` URI (sent as is, decoded here to check
it), or a local file path (read at submit time and sent inline as a data URI). A local file is
kept in a job's inputs as a *file reference* (`local_file`, `sha256`, `bytes`, `media_type`),
never as its data: the reference is what the state file and metadata.jsonl record, and its
sha256 (not its path) is what the job key hashes (`jobs.job_key`).

Sniffing, data-URI decoding and the catalogue's `validations` live here once; the simulator
uses the same functions to check what it receives.
"""

from __future__ import annotations

import base64
import binascii
import functools
import glob
import hashlib
import io
import ipaddress
import operator
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from batch_runner.jobs import LOCAL_FILE

MB = 1024 * 1024
MAX_BODY_BYTES = 64 * MB  # RunComfy's limit on one request body
DEFAULT_MAX_INLINE_MB = 8.0
_CHUNK = 1 << 20
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST_LIKE = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/")
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".intranet")

# (media kind, format) -> the media type of a data URI
MEDIA_TYPES = {
    ("image", "png"): "image/png",
    ("image", "jpeg"): "image/jpeg",
    ("image", "gif"): "image/gif",
    ("image", "webp"): "image/webp",
    ("video", "mp4"): "video/mp4",
    ("video", "mov"): "video/quicktime",
    ("video", "webm"): "video/webm",
    ("audio", "wav"): "audio/wav",
    ("audio", "mp3"): "audio/mpeg",
    ("audio", "flac"): "audio/flac",
    ("audio", "ogg"): "audio/ogg",
    ("audio", "m4a"): "audio/mp4",
}
_OTHER_TYPES = {b"%PDF": "a PDF document", b"PK\x03\x04": "a ZIP archive"}

# rule -> (what it measures, comparison that must hold)
RULES: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "file_size_mb<": ("size_mb", operator.lt),
    "width/height>": ("ratio", operator.gt),
    "width/height<": ("ratio", operator.lt),
    "width_pixels>": ("width", operator.gt),
    "height_pixels>": ("height", operator.gt),
}


@dataclass(frozen=True)
class Limits:
    """What the checks allow: bytes inline per file, and hosts allowed despite the URL rules."""

    max_inline_bytes: int = int(DEFAULT_MAX_INLINE_MB * MB)
    allow_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, max_inline_mb: float | None, allow_hosts: list[str] | None) -> Limits:
        mb = DEFAULT_MAX_INLINE_MB if max_inline_mb is None else max_inline_mb
        return cls(int(mb * MB), frozenset(h.lower() for h in allow_hosts or []))


@dataclass(frozen=True)
class Facts:
    """What was learnt of one file or data URI: enough to check it and to reference it."""

    sha256: str
    bytes: int
    kind: str | None  # image, video, audio; None when no known type matched
    fmt: str | None  # png, mp4, ... (or a description such as "a PDF document")
    size: tuple[int, int] | None  # width, height of an image

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get((self.kind or "", self.fmt or ""), "application/octet-stream")


# ---- bytes -----------------------------------------------------------------------------------


def sniff(data: bytes) -> tuple[str, str] | None:
    """(media kind, format) from a file's first bytes, None when no known type matches."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "gif"
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return ("image", "webp") if head[8:12] == b"WEBP" else ("audio", "wav")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio", "m4a"
        return "video", "mov" if brand == b"qt  " else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "webm"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head.startswith(b"OggS"):
        return "audio", "ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "mp3"
    return None


def decode_data_uri(value: str) -> bytes | None:
    """The bytes of a `data:[type][;base64],DATA` URI; None when it is malformed."""
    meta, comma, payload = value[5:].partition(",")
    if not comma:
        return None
    if meta.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
    return unquote_to_bytes(payload)


def image_size(source: bytes | Path) -> tuple[int, int] | None:
    """(width, height) read from the image header (the pixels are not decoded)."""
    from PIL import Image, UnidentifiedImageError  # here: text-only manifests never need it

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def facts_of(head: bytes, n_bytes: int, sha256: str, image: bytes | Path) -> Facts:
    found = sniff(head)
    if found is None:
        other = next((v for k, v in _OTHER_TYPES.items() if head.startswith(k)), None)
        return Facts(sha256, n_bytes, None, other, None)
    size = image_size(image) if found[0] == "image" else None
    return Facts(sha256, n_bytes, found[0], found[1], size)


def broken_rule(rules: Any, n_bytes: int, size: Any) -> tuple[str, float, float] | None:
    """The first known validation rule a file breaks: (rule, limit, measured); None if none.

    Unknown rules are skipped (see `unknown_rules`); sizes of video/audio are not measured."""
    measures: dict[str, float] = {"size_mb": n_bytes / MB}
    if size is not None and size[1] > 0:
        measures.update(width=size[0], height=size[1], ratio=size[0] / size[1])
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, dict):
            continue
        name, limit = rule.get("validation_rule"), rule.get("validation_value")
        known = RULES.get(name) if isinstance(name, str) else None
        if known is None or not isinstance(limit, int | float) or known[0] not in measures:
            continue
        if not known[1](measures[known[0]], limit):
            return name, limit, round(measures[known[0]], 4)
    return None


def unknown_rules(rules: Any) -> list[str]:
    names = [r.get("validation_rule") for r in rules if isinstance(r, dict)] if rules else []
    return [str(n) for n in names if n not in RULES]


def field_rules(prop: Mapping[str, Any]) -> list[Any]:
    """A media field's `validations`, on the field or (for a list) on its items."""
    rules = prop.get("validations")
    if rules is None and isinstance(prop.get("items"), dict):
        rules = prop["items"].get("validations")
    return rules if isinstance(rules, list) else []


# ---- values ----------------------------------------------------------------------------------


def url_problem(value: str, limits: Limits) -> str | None:
    """Why a URL-looking value cannot be sent as is; None for a public https URL."""
    parts = urlsplit(value)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if host and host in limits.allow_hosts and scheme in ("http", "https"):
        return None
    if scheme == "file":
        return "file:// URLs are not sent; write the file's path instead (it is sent inline)"
    if scheme != "https":
        hint = " (or --allow-input-host HOST)" if scheme == "http" else ""
        return (
            f"{scheme}:// URLs are refused: RunComfy fetches inputs from public https:// URLs; "
            f"give an https URL or a local file path{hint}"
        )
    if not host:
        return "this URL has no host"
    if _private(host):
        return (
            f"{host} is a private-network host RunComfy cannot reach; give a public https URL "
            f"or a local file path (or --allow-input-host {host})"
        )
    return None


def _private(host: str) -> bool:
    if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES) or "." not in host:
        return True
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False


def is_local_path(value: str) -> bool:
    """A value that names a file on this machine (no URL scheme; `C:\\...` counts as a path)."""
    return not _SCHEME.match(value) or bool(re.match(r"^[A-Za-z]:[\\/]", value))


def resolve_path(value: str, base: Path) -> Path:
    """A local path as written (`~` expanded), relative to `base` (the manifest's folder)."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base / path


def data_uri_facts(value: str, limits: Limits) -> Facts | str:
    """Facts of a data URI's decoded bytes, or why it cannot be sent."""
    if len(value) * 3 // 4 > limits.max_inline_bytes + 4:  # no need to decode to know
        return inline_limit_problem("this data: URI", len(value) * 3 // 4, limits)
    data = decode_data_uri(value)
    if data is None:
        return "malformed data: URI (expected data:TYPE;base64,DATA)"
    if len(data) > limits.max_inline_bytes:
        return inline_limit_problem("this data: URI", len(data), limits)
    return facts_of(data[:64], len(data), hashlib.sha256(data).hexdigest(), data)


def file_facts(path: Path, limits: Limits) -> Facts | str:
    """Facts of a local file (hashed in chunks: never held whole), or why it cannot be sent
    (without the file's name: the caller puts the path as the user wrote it in front)."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            return "a folder, not a file (a folder sweep is FIELD: {files: 'GLOB'})"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > limits.max_inline_bytes:
            return inline_limit_problem("the file", st.st_size, limits)
        with open(path, "rb") as fh:
            head = fh.read(_CHUNK)
            digest = hashlib.sha256(head)
            n_bytes = len(head)
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                n_bytes += len(chunk)
    except FileNotFoundError:
        return f"no such file ({path})"
    except NotADirectoryError:
        return f"no such file ({path}: a part of it is a file, not a folder)"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    return facts_of(head, n_bytes, digest.hexdigest(), path)


def missing_hint(value: str) -> str:
    """A hint for a missing file written like a URL without its scheme (`example.com/a.png`)."""
    return " (a URL needs https:// in front)" if _HOST_LIKE.match(value) else ""


def inline_limit_problem(what: str, n_bytes: int, limits: Limits) -> str:
    return (
        f"{what} is {n_bytes / MB:.1f} MB, over the {limits.max_inline_bytes / MB:g} MB limit "
        "for inputs sent inline (--max-inline-mb); upload it somewhere public and give its "
        "https:// URL instead"
    )


def kind_problem(facts: Facts, kind: str) -> str | None:
    """Why a file cannot go into a field of media `kind` (a PDF given as an image)."""
    if kind == "audio" and (facts.kind, facts.fmt) == ("video", "mp4"):
        return None  # an ISO-MP4 (brand isom, mp42, ...) may carry sound only: the API decides
    if facts.kind == kind:
        if kind == "image" and facts.size is None:
            return f"this {facts.fmt} image cannot be read (a damaged file?)"
        return None
    if facts.kind is None:
        what = facts.fmt or "not a known image, video or audio format"
        return f"expected {kind} data, got {what}"
    return f"expected {kind} data, got {facts.kind} ({facts.fmt})"


def rule_problem(facts: Facts, rules: list[Any]) -> str | None:
    broken = broken_rule(rules, facts.bytes, facts.size)
    if broken is None:
        return None
    name, limit, got = broken
    return f"fails the model's validation {name} {limit:g} (this file: {got:g})"


def file_ref(path: Path, facts: Facts) -> dict[str, Any]:
    """The job-input form of a local file: what is stored and recorded instead of its data."""
    return {
        LOCAL_FILE: str(path),
        "sha256": facts.sha256,
        "bytes": facts.bytes,
        "media_type": facts.media_type,
    }


def is_file_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(LOCAL_FILE), str)


def inline_size(value: Any) -> int:
    """Bytes a value adds to the request body (a file reference: as base64 in a data URI)."""
    if is_file_ref(value):
        return -(-int(value["bytes"]) // 3) * 4 + len(str(value["media_type"])) + 16
    return len(value) if isinstance(value, str) else 0


# ---- folder sweeps ---------------------------------------------------------------------------


def is_files_axis(value: Any) -> bool:
    """`{files: "GLOB"}`: a folder sweep axis (CONTRACT §3)."""
    return isinstance(value, dict) and set(value) == {"files"}


@functools.lru_cache(maxsize=64)
def glob_files(base: str, pattern: str) -> tuple[str, ...]:
    """The files matching `pattern` (relative to `base` unless absolute or `~`), sorted; the
    paths as the pattern writes them (relative stays relative), `**` crossing folders."""
    expanded = os.path.expanduser(pattern)
    if os.path.isabs(expanded):
        found = glob.glob(expanded, recursive=True)
        return tuple(sorted(p for p in found if os.path.isfile(p)))
    found = glob.glob(expanded, root_dir=base, recursive=True)
    return tuple(sorted(p for p in found if os.path.isfile(os.path.join(base, p))))
