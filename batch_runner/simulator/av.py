"""Video and audio outputs: a real playable MP4 (a bundled asset) and real WAV tones.

`assets/tiny.mp4` is a 32x32, 1 s, 8 fps H.264 (constrained baseline) clip made once at
development time with ffmpeg's test pattern (`ffmpeg -f lavfi -i testsrc=size=32x32:rate=8:
duration=1 -c:v libx264 -profile:v baseline -pix_fmt yuv420p -movflags +faststart
-map_metadata -1 -an tiny.mp4`); ffmpeg is not needed at run time.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import wave
from importlib import resources

WAV_RATE = 8000  # samples per second, mono 16-bit: 16 KB per second of audio
MAX_WAV_SECONDS = 2.0  # however long the job asked for, files stay small
_BASE_HZ = 220.0


@functools.cache
def mp4_bytes() -> bytes:
    """The bundled playable MP4 (ftyp, moov, mdat boxes)."""
    asset = resources.files("batch_runner.simulator").joinpath("assets", "tiny.mp4")
    return asset.read_bytes()


def wav_seconds(duration: float | None) -> float:
    """How long the WAV of a job is: its duration, capped at MAX_WAV_SECONDS (1 s if unknown)."""
    if duration is None:
        return 1.0
    return min(MAX_WAV_SECONDS, max(0.1, duration))


def wav_bytes(seconds: float, bucket: int) -> bytes:
    """A sine tone of `seconds` whose pitch comes from `bucket`, so different jobs differ."""
    freq = _BASE_HZ * 2 ** (bucket / 12)
    count = round(seconds * WAV_RATE)
    step = 2 * math.pi * freq / WAV_RATE
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(i * step))) for i in range(count))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(WAV_RATE)
        wav.writeframes(frames)
    return out.getvalue()


def pad_wav(data: bytes, missing: int) -> bytes:
    """Append a JUNK chunk (which readers skip) and grow the RIFF size to match."""
    body = b"\x00" * (max(0, missing - 8) + (max(0, missing - 8) % 2))  # chunks are even
    chunk = b"JUNK" + struct.pack("<I", len(body)) + body
    riff_size = struct.unpack("<I", data[4:8])[0] + len(chunk)
    return data[:4] + struct.pack("<I", riff_size) + data[8:] + chunk
