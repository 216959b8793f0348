"""Pure builders and readers for text embedded in image files (PNG text chunks, JPEG comments)."""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
JPEG_COM_MAX = 65533  # a segment length field counts itself (2 bytes) and tops out at 65535


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_text_chunk(keyword: str, text: str) -> bytes:
    """A PNG `tEXt` chunk (latin-1), or an `iTXt` chunk (UTF-8) when the text is not latin-1."""
    key = keyword.encode("latin-1")
    if not 1 <= len(key) <= 79 or b"\x00" in key:
        raise ValueError("PNG text keyword must be 1-79 latin-1 characters without NUL")
    try:
        body = text.encode("latin-1")
    except UnicodeEncodeError:
        # iTXt: keyword, NUL, compression flag, method, language tag NUL, translated keyword NUL
        return _png_chunk(b"iTXt", key + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))
    return _png_chunk(b"tEXt", key + b"\x00" + body)


def _utf8_pieces(data: bytes, size: int) -> list[bytes]:
    """Split UTF-8 bytes into pieces of at most `size` bytes without cutting a character."""
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        # back off over continuation bytes so each piece stays valid UTF-8
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(data[start:end])
        start = end
    return pieces


def jpeg_com_segment(text: str) -> bytes:
    """One or more JPEG COM segments holding `text` as UTF-8 (split past 65533 bytes)."""
    data = text.encode("utf-8")
    pieces = _utf8_pieces(data, JPEG_COM_MAX) or [b""]
    return b"".join(b"\xff\xfe" + struct.pack(">H", len(p) + 2) + p for p in pieces)


def _decode_itxt(data: bytes) -> tuple[str, str] | None:
    key, _, rest = data.partition(b"\x00")
    if len(rest) < 2:
        return None
    compressed, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    if compressed:
        text = zlib.decompress(text)
    return key.decode("latin-1"), text.decode("utf-8", errors="replace")


def _decode_text_chunk(kind: bytes, data: bytes) -> tuple[str, str] | None:
    if kind == b"tEXt":
        key, _, text = data.partition(b"\x00")
        return key.decode("latin-1"), text.decode("latin-1")
    if kind == b"zTXt":
        key, _, rest = data.partition(b"\x00")
        return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
    if kind == b"iTXt":
        return _decode_itxt(data)
    return None


def read_png_text(data: bytes) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file, keyword → text; {} if not a PNG."""
    out: dict[str, str] = {}
    if not data.startswith(PNG_SIGNATURE):
        return out
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        try:
            found = _decode_text_chunk(kind, chunk)
        except (zlib.error, IndexError):
            found = None
        if found:
            out[found[0]] = found[1]
        if kind == b"IEND":
            break
    return out


def read_jpeg_comments(data: bytes) -> list[str]:
    """The COM segments of a JPEG file (before its image data), decoded as UTF-8."""
    out: list[str] = []
    if not data.startswith(JPEG_SOI):
        return out
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image: no more headers
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xFE:
            out.append(data[pos + 4 : pos + 2 + length].decode("utf-8", errors="replace"))
        pos += 2 + length
    return out
