"""What a downloaded file is, from its own bytes: its type, its media kind, its folder.

`sniff` names the type from the first bytes (never from the URL or Content-Type, which CDN
error pages get wrong); `check` then looks at the structure of the whole file as written
(chunk, box or page layout, the right trailer), so a body that merely starts well is refused.
Both are pure: `check` reads through a `read_at(offset, size)` callable, over bytes in memory
or a file on disk alike.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from batch_runner.outputs.embed import PNG_SIGNATURE

HEAD = 64  # bytes `sniff` needs (a WebM's DocType sits within its first 40 or so)
KINDS = {
    **dict.fromkeys(("png", "jpg", "webp", "gif"), "image"),
    **dict.fromkeys(("mp4", "webm", "mov"), "video"),
    **dict.fromkeys(("wav", "mp3", "flac", "ogg", "m4a"), "audio"),
}
FOLDERS = {"image": "images", "video": "videos", "audio": "audio"}  # CONTRACT §4
NAMES = "PNG, JPEG, WebP, GIF, MP4, WebM, MOV, WAV, MP3, FLAC, Ogg or M4A"

ReadAt = Callable[[int, int], bytes]


def kind_of(ext: str) -> str:
    """image, video or audio for a sniffed type."""
    return KINDS[ext]


def folder_of(ext: str) -> str:
    """The run directory's folder for files of this type: images/, videos/ or audio/."""
    return FOLDERS[KINDS[ext]]


def sniff(head: bytes) -> str | None:
    """The file type its first bytes show (an extension of KINDS), or None."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_FORMS:
        return _RIFF_FORMS[head[8:12]]
    if head[4:8] == b"ftyp":
        return _bmff_type(head[8:12])
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"  # QuickTime files from before `ftyp`
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"\x42\x82\x84webm" in head[:HEAD] else None  # DocType "webm"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS\x00"):
        return "ogg"
    if head.startswith(b"ID3") or _mp3_frame(head):
        return "mp3"
    return None


_RIFF_FORMS = {b"WEBP": "webp", b"WAVE": "wav"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P "}


def _bmff_type(brand: bytes) -> str:
    if brand in _AUDIO_BRANDS:
        return "m4a"
    return "mov" if brand == b"qt  " else "mp4"


def _mp3_frame(head: bytes) -> bool:
    """An MPEG audio frame header: sync bits, a real layer, a usable bitrate and rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    layer, bitrate, rate = (head[1] >> 1) & 3, head[2] >> 4, (head[2] >> 2) & 3
    return layer != 0 and bitrate != 15 and rate != 3 and (head[1] >> 3) & 3 != 1


def check(ext: str, read_at: ReadAt, size: int) -> str | None:
    """Why the complete file of type `ext` is not well formed, or None when it is."""
    return _CHECKS[ext](read_at, size)


def in_memory(data: bytes) -> ReadAt:
    return lambda offset, n: data[offset : offset + n] if offset >= 0 else b""


def _png(read_at: ReadAt, size: int) -> str | None:
    if read_at(12, 4) != b"IHDR":
        return "no IHDR chunk first"
    if read_at(size - 12, 12) != b"\x00\x00\x00\x00IEND\xaeB`\x82":
        return "no IEND chunk at the end"
    return None


def _jpeg(read_at: ReadAt, size: int) -> str | None:
    # some encoders pad after the end-of-image marker: look for it near the end
    return None if b"\xff\xd9" in read_at(max(0, size - 1024), 1024) else "no end-of-image marker"


def _gif(read_at: ReadAt, size: int) -> str | None:
    return None if read_at(size - 1, 1) == b";" else "no GIF trailer"


def _riff_chunks(read_at: ReadAt, size: int) -> list[bytes] | str:
    """The ids of a RIFF file's first chunks, or why its layout is wrong."""
    (declared,) = struct.unpack("<I", read_at(4, 4))
    # 0 and 0xFFFFFFFF: written while streaming, length unknown; trailing data is tolerated
    if declared not in (0, 0xFFFFFFFF):
        if declared + 8 > size:
            return f"RIFF size {declared + 8} is more than the file's {size} bytes"
        size = declared + 8
    ids, offset = [], 12
    while offset + 8 <= size and len(ids) < _MAX_CHUNKS:
        kind, length = struct.unpack("<4sI", read_at(offset, 8))
        ids.append(kind)
        offset += 8 + length + (length & 1)
    return ids or "no RIFF chunk"


_MAX_CHUNKS = 64


def _wav(read_at: ReadAt, size: int) -> str | None:
    ids = _riff_chunks(read_at, size)
    if isinstance(ids, str):
        return ids
    return None if b"fmt " in ids else "no fmt chunk"


def _webp(read_at: ReadAt, size: int) -> str | None:
    ids = _riff_chunks(read_at, size)
    if isinstance(ids, str):
        return ids
    return None if ids[0] in (b"VP8 ", b"VP8L", b"VP8X") else "no VP8 chunk first"


def _bmff(read_at: ReadAt, size: int) -> str | None:
    """ISO base media (MP4, MOV, M4A): top-level boxes tile the file exactly; a `moov` box."""
    offset, seen = 0, set()
    while offset < size:
        header = read_at(offset, 16)
        if len(header) < 8:
            return f"a box header cut short at byte {offset}"
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1:
            if len(header) < 16:
                return f"a box header cut short at byte {offset}"
            (length,) = struct.unpack(">Q", header[8:16])
        elif length == 0:
            length = size - offset  # the last box runs to the end of the file
        if length < 8 or offset + length > size:
            return f"box {kind!r} at byte {offset} runs past the end of the file"
        seen.add(kind)
        offset += length
    return None if b"moov" in seen else "no moov box"


def _webm(read_at: ReadAt, size: int) -> str | None:
    """EBML: the header element, then a Segment."""
    width, length = _vint(read_at(4, 8))
    if width == 0:
        return "a malformed EBML header"
    segment = 4 + width + length
    if read_at(segment, 4) != b"\x18\x53\x80\x67":
        return "no Segment after the header"
    width, length = _vint(read_at(segment + 4, 8))
    if width == 0:
        return "a malformed Segment size"
    unknown = length == (1 << (7 * width)) - 1  # all ones: written live, size not known
    if not unknown and segment + 4 + width + length > size:
        return "the Segment runs past the end of the file"
    return None


def _vint(data: bytes) -> tuple[int, int]:
    """(bytes used, value) of an EBML variable-size integer; (0, 0) when malformed."""
    if not data or data[0] == 0:
        return 0, 0
    width = 8 - data[0].bit_length() + 1
    if len(data) < width:
        return 0, 0
    value = data[0] & (0xFF >> width)
    for byte in data[1:width]:
        value = value << 8 | byte
    return width, value


def _flac(read_at: ReadAt, size: int) -> str | None:
    block = read_at(4, 4)
    if len(block) < 4 or block[0] & 0x7F != 0 or int.from_bytes(block[1:4], "big") != 34:
        return "no STREAMINFO block first"
    return None if size >= 42 else "cut short after STREAMINFO"


def _ogg(read_at: ReadAt, size: int) -> str | None:
    header = read_at(0, 27)
    if len(header) < 27 or not header[5] & 0x02:
        return "the first Ogg page is not a beginning of stream"
    first_page = 27 + header[26] + sum(read_at(27, header[26]))
    if first_page > size:
        return "the first Ogg page runs past the end of the file"
    return None if first_page == size or read_at(first_page, 4) == b"OggS" else "no second page"


def _mp3(read_at: ReadAt, size: int) -> str | None:
    start = 0
    tag = read_at(0, 10)
    if tag[:3] == b"ID3":  # skip the tag (its size is synchsafe: 7 bits a byte)
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(tag[6:10]))
        start += 10 if tag[5] & 0x10 else 0  # a footer
    if start >= size or not _mp3_frame(read_at(start, 4)):
        return "no MPEG audio frame"
    return None


_CHECKS: dict[str, Callable[[ReadAt, int], str | None]] = {
    "png": _png,
    "jpg": _jpeg,
    "gif": _gif,
    "webp": _webp,
    "wav": _wav,
    "mp4": _bmff,
    "mov": _bmff,
    "m4a": _bmff,
    "webm": _webm,
    "flac": _flac,
    "ogg": _ogg,
    "mp3": _mp3,
}
