"""Output files for the simulator: real PNG/JPEG gradients, a tiny MP4, padding, and a cache."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from collections import OrderedDict

from PIL import Image

DEFAULT_RESOLUTION = "2304x1728 (4:3)"
_SIZED = re.compile(r"^\s*(\d+)\s*x\s*(\d+)")
_PRESETS = {"2K": (2048, 2048), "3K": (3072, 3072)}
HUE_BUCKETS = 24
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "mp4": "video/mp4"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "mp4": "mp4"}

# A private, safe-to-copy ancillary PNG chunk type: decoders must skip it.
_PAD_CHUNK = b"prVt"
_JPEG_COM_MAX = 65533  # a COM segment's length field (2 bytes) counts itself


def resolution_size(resolution: str | None, scale: float = 1.0) -> tuple[int, int]:
    """Pixel size for a schema resolution ("2048x2048 (1:1)", "2K", "3K") times `scale`."""
    text = resolution or DEFAULT_RESOLUTION
    if text in _PRESETS:
        width, height = _PRESETS[text]
    else:
        match = _SIZED.match(text) or _SIZED.match(DEFAULT_RESOLUTION)
        assert match is not None
        width, height = int(match[1]), int(match[2])
    return max(1, round(width * scale)), max(1, round(height * scale))


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
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def mp4_bytes() -> bytes:
    """A tiny file that looks like an MP4 (ftyp, free and mdat boxes); not playable."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41"
    mdat = b"mdat" + b"\x00" * 64
    return _box(ftyp) + _box(b"free") + _box(mdat)


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
    return data + _box(b"free" + b"\x00" * max(0, missing - 8))


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
    """An LRU of encoded files keyed by (kind, bucket, width, height, pad), bounded in bytes."""

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
        raw = mp4_bytes() if fmt == "mp4" else render(key[1], width, height, fmt)
        data = pad(raw, fmt, pad_to)
        self._items[key] = data
        self._bytes += len(data)
        while len(self._items) > 1 and (
            self._bytes > self.max_bytes or len(self._items) > self.max_items
        ):
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)
        return data
