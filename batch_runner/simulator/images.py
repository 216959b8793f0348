"""Output files for the simulator: real PNG/JPEG/WebP gradients, MP4 and WAV (av.py), padding,
and a cache."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from collections import OrderedDict
from typing import Any

from PIL import Image

from batch_runner.simulator.av import mp4_bytes, pad_wav, wav_bytes

_SIZED = re.compile(r"^\s*(\d+)\s*x\s*(\d+)")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
_BASES = {"1k": 1024, "2k": 2048, "3k": 3072, "4k": 4096}  # long side of a preset resolution
DEFAULT_BASE = 1024  # long side for models without a resolution input
HUE_BUCKETS = 24
CONTENT_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "wav": "audio/wav",
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "mp4": "mp4", "wav": "wav"}
FORMATS = {ext: fmt for fmt, ext in EXTENSIONS.items()}

# A private, safe-to-copy ancillary PNG chunk type: decoders must skip it.
_PAD_CHUNK = b"prVt"
_JPEG_COM_MAX = 65533  # a COM segment's length field (2 bytes) counts itself


def image_size(
    inputs: dict[str, Any],
    schema: dict[str, Any] | None,
    scale: float = 1.0,
    echo: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """Pixel size of a job's images times `scale`: a "WxH" `resolution`, else a preset
    ("2K", "1k", ...) shaped by `aspect_ratio` (square when absent or "auto"), else the size
    of the input image (`echo`) when the job sets neither, else 1024 px on the long side."""
    props = (schema or {}).get("properties") or {}
    resolution = _input(inputs, props, "resolution")
    ratio = _input(inputs, props, "aspect_ratio")
    sized = _SIZED.match(resolution) if isinstance(resolution, str) else None
    if sized:
        width, height = int(sized[1]), int(sized[2])
    elif echo and not ({"resolution", "aspect_ratio"} & set(inputs)):
        width, height = echo
    else:
        base = _BASES.get(str(resolution).lower(), DEFAULT_BASE)
        width, height = _shape(base, ratio)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _input(inputs: dict[str, Any], props: dict[str, Any], name: str) -> Any:
    if name in inputs:
        return inputs[name]
    prop = props.get(name)
    return prop.get("default") if isinstance(prop, dict) else None


def _shape(base: int, ratio: Any) -> tuple[int, int]:
    """(width, height) with the long side `base` and the aspect "W:H" (square otherwise)."""
    match = _RATIO.match(ratio) if isinstance(ratio, str) else None
    if not match or not float(match[1]) or not float(match[2]):
        return base, base
    w, h = float(match[1]), float(match[2])
    return (base, round(base * h / w)) if w >= h else (round(base * w / h), base)


def hue_bucket(prompt: str) -> int:
    """A stable hue bucket for a prompt, so different prompts look different."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "replace"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % HUE_BUCKETS


def render(bucket: int, width: int, height: int, fmt: str) -> bytes:
    """Encode a soft gradient image whose hue comes from `bucket` (0..HUE_BUCKETS-1)."""
    base = 128
    hue0 = bucket * 256 // HUE_BUCKETS
    # hue drifts a little across the image; saturation and value make a soft vignette
    drift = Image.linear_gradient("L").resize((base, base)).point(lambda v: (hue0 + v // 6) % 256)
    sat = Image.linear_gradient("L").rotate(90).resize((base, base)).point(lambda v: 110 + v // 2)
    val = Image.radial_gradient("L").resize((base, base)).point(lambda v: 255 - v // 3)
    small = Image.merge("HSV", (drift, sat, val)).convert("RGB")
    image = small.resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=85)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=80, method=0)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _box(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 4) + payload


def pad(data: bytes, fmt: str, size: int) -> bytes:
    """Pad `data` to at least `size` bytes in a way decoders ignore; unchanged if already big."""
    missing = size - len(data)
    if missing <= 0:
        return data
    if fmt == "png":
        return _pad_png(data, missing)
    if fmt == "jpeg":
        return _pad_jpeg(data, missing)
    if fmt == "wav":
        return pad_wav(data, missing)
    if fmt == "webp":
        return data  # WebP allows extra chunks only in its extended layout: left unpadded
    return data + _box(b"free" + b"\x00" * max(0, missing - 8))  # an MP4 box players skip


def _pad_png(data: bytes, missing: int) -> bytes:
    body = b"\x00" * max(0, missing - 12)  # a chunk costs 12 bytes of framing
    chunk = struct.pack(">I", len(body)) + _PAD_CHUNK + body
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    iend = data.rindex(b"IEND") - 4  # the chunk's length field precedes its type
    return data[:iend] + chunk + data[iend:]


def _pad_jpeg(data: bytes, missing: int) -> bytes:
    segments = []
    while missing > 0:
        take = min(_JPEG_COM_MAX, max(0, missing - 4))
        segments.append(b"\xff\xfe" + struct.pack(">H", take + 2) + b"\x00" * take)
        missing -= take + 4
    return data[:2] + b"".join(segments) + data[2:]  # right after SOI


class FileCache:
    """An LRU of encoded files keyed by (format, bucket, width, height, pad), bounded in bytes.
    For WAV files `width` is the length in milliseconds."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024, max_items: int = 256):
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes
        self.max_items = max_items

    def get(self, fmt: str, bucket: int, width: int, height: int, pad_to: int) -> bytes:
        """The encoded file, rendered on first use."""
        key = (fmt, bucket % HUE_BUCKETS, width, height, pad_to)
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
            return data
        raw = _make(fmt, key[1], width, height)
        data = pad(raw, fmt, pad_to)
        self._items[key] = data
        self._bytes += len(data)
        while len(self._items) > 1 and (
            self._bytes > self.max_bytes or len(self._items) > self.max_items
        ):
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)
        return data


def _make(fmt: str, bucket: int, width: int, height: int) -> bytes:
    if fmt == "mp4":
        return mp4_bytes()
    if fmt == "wav":
        return wav_bytes(width / 1000, bucket)
    return render(bucket, width, height, fmt)
