"""Media inputs as the simulator checks them (CONTRACT §1 "Media inputs").

`https://` URLs are accepted unfetched; `data:` URIs are decoded, their media kind sniffed
from the bytes and compared with the field's, and the field's `validations` applied (image
sizes read from the header with Pillow, without decoding the pixels); any other scheme is
refused. Unknown validation rules are skipped, as RunComfy's clients do.
"""

from __future__ import annotations

import base64
import binascii
import io
import operator
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from PIL import Image, UnidentifiedImageError

from batch_runner.catalog import media_fields

MB = 1024 * 1024
Detail = dict[str, Any]

# rule -> (what it measures, comparison that must hold)
_RULES: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "file_size_mb<": ("size_mb", operator.lt),
    "width/height>": ("ratio", operator.gt),
    "width/height<": ("ratio", operator.lt),
    "width_pixels>": ("width", operator.gt),
    "height_pixels>": ("height", operator.gt),
}


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


def media_problems(schema: dict[str, Any], body: dict[str, Any]) -> tuple[list[Detail], Any]:
    """422 details for the media inputs of `body`, and the (width, height) of the first image
    sent inline (None when there is none), which image outputs may echo."""
    detail: list[Detail] = []
    first_size = None
    props = schema.get("properties") or {}
    for name, (kind, _many) in media_fields(schema).items():
        value = body.get(name)
        values = value if isinstance(value, list) else [value]
        rules = props[name].get("validations") or []
        for i, item in enumerate(values):
            if not isinstance(item, str):
                continue  # the schema check reports wrong types
            loc = ["body", name, i] if isinstance(value, list) else ["body", name]
            problem, size = _check_one(item, kind, rules)
            if problem is not None:
                detail.append({"loc": loc, **problem})
            elif size is not None and first_size is None:
                first_size = size
    return detail, first_size


def _check_one(value: str, kind: str, rules: list[Any]) -> tuple[dict[str, str] | None, Any]:
    if value.startswith("https://"):
        return None, None
    if not value.startswith("data:"):
        msg = f"a {kind} input must be an https:// URL or a data: URI"
        return {"msg": msg, "type": "url_scheme"}, None
    data = decode_data_uri(value)
    if data is None:
        return {"msg": "malformed data: URI", "type": "data_uri"}, None
    found = sniff(data)
    if found is None or found[0] != kind:
        what = f"a {found[0]} ({found[1]})" if found else "not a known media type"
        return {"msg": f"expected {kind} data, got {what}", "type": "media_kind"}, None
    size = _image_size(data) if kind == "image" else None
    if kind == "image" and size is None:
        return {"msg": "image data cannot be read", "type": "media_kind"}, None
    return _rule_problem(rules, len(data), size), size


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _rule_problem(rules: list[Any], n_bytes: int, size: Any) -> dict[str, str] | None:
    """The first validation rule the file breaks, as a detail; None when all hold."""
    measures: dict[str, float] = {"size_mb": n_bytes / MB}
    if size is not None and size[1] > 0:
        measures.update(width=size[0], height=size[1], ratio=size[0] / size[1])
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        name, limit = rule.get("validation_rule"), rule.get("validation_value")
        known = _RULES.get(name) if isinstance(name, str) else None
        if known is None or not isinstance(limit, int | float) or known[0] not in measures:
            continue  # an unknown rule is skipped; sizes of video/audio are not read
        if not known[1](measures[known[0]], limit):
            got = round(measures[known[0]], 4)
            msg = f"fails validation {name} {limit} (got {got})"
            return {"msg": msg, "type": f"validation:{name}"}
    return None
