"""Small, well-formed files of every output type the downloader knows, built in memory.

Images come from Pillow, WAV from the standard library, MP4 from the simulator's real asset;
the others are laid out by hand from their format specifications (minimal but structurally
complete: the boxes, elements, blocks or pages a reader looks at first).
"""

from __future__ import annotations

import io
import struct
import wave

from PIL import Image

from batch_runner.simulator.av import mp4_bytes


def image(fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buf, format=fmt)
    return buf.getvalue()


def wav(frames: int = 800) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * frames)
    return buf.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def bmff(brand: bytes) -> bytes:
    """ftyp (with `brand`), moov, mdat: the top-level layout of MP4, MOV and M4A files."""
    ftyp = _box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"isom")
    return ftyp + _box(b"moov", _box(b"mvhd", bytes(100))) + _box(b"mdat", bytes(64))


def webm() -> bytes:
    doctype = b"\x42\x82\x84webm"  # DocType, size 4, "webm"
    header = b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(doctype)]) + doctype
    segment = b"\x18\x53\x80\x67" + b"\x88" + bytes(8)
    return header + segment


def flac() -> bytes:
    return b"fLaC" + b"\x80\x00\x00\x22" + bytes(34) + b"\xff\xf8" + bytes(30)


def ogg() -> bytes:
    payload = b"\x01vorbis" + bytes(22)
    page = b"OggS\x00\x02" + bytes(8) + b"\x01\x00\x00\x00" + bytes(8)
    return page + bytes([1, len(payload)]) + payload


def mp3(id3: bool = True) -> bytes:
    frame = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz
    tag = b"ID3\x04\x00\x00" + b"\x00\x00\x00\x0a" + bytes(10) if id3 else b""
    return tag + frame * 3


SAMPLES = {
    "png": lambda: image("PNG"),
    "jpg": lambda: image("JPEG"),
    "webp": lambda: image("WEBP"),
    "gif": lambda: image("GIF"),
    "mp4": mp4_bytes,
    "mov": lambda: bmff(b"qt  "),
    "webm": webm,
    "wav": wav,
    "mp3": mp3,
    "flac": flac,
    "ogg": ogg,
    "m4a": lambda: bmff(b"M4A "),
}
