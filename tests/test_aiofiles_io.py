"""File I/O from the event loop goes through aiofiles: a download's streamed pieces
(`PartFile.awrite`) and local inputs put inline at submit (`read_inline_body`), with the same
bytes, hashes and refusals as the blocking forms."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from batch_runner.jobs import LOCAL_FILE
from batch_runner.outputs.files import PartFile
from batch_runner.run.inline import PIECE, InputChanged, read_inline_body


async def test_awrite_hashes_counts_and_renames_like_write(tmp_path):
    final = tmp_path / "big.bin"
    part = PartFile(final)
    pieces = [bytes([i]) * 65_536 for i in range(40)]
    part.write(pieces[0])
    for piece in pieces[1:]:
        await part.awrite(piece)
    part.commit()
    data = b"".join(pieces)
    assert final.read_bytes() == data and part.size == len(data)
    assert part.sha256 == hashlib.sha256(data).hexdigest()
    assert not list(tmp_path.glob("*.part"))


async def test_a_discard_during_awrites_leaves_no_file(tmp_path):
    part = PartFile(tmp_path / "x.bin")
    writes = [asyncio.ensure_future(part.awrite(b"x" * 1_000_000)) for _ in range(8)]
    await asyncio.sleep(0)
    part.discard()  # waits for a write in progress; the later ones are refused
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert all(r is None or isinstance(r, ValueError) for r in results)
    assert not list(tmp_path.iterdir())


def _ref(path, data: bytes, media_type: str = "image/png") -> dict:
    return {
        LOCAL_FILE: str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "media_type": media_type,
    }


@pytest.mark.parametrize("size", [0, 10, PIECE - 1, PIECE, 2 * PIECE + 7])
async def test_read_inline_body_encodes_every_piece_size(tmp_path, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "in.png"
    path.write_bytes(data)
    inputs = {"prompt": "p", "image": _ref(path, data), "refs": [_ref(path, data), "https://x/y"]}
    body = await read_inline_body(inputs)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    assert body == {"prompt": "p", "image": uri, "refs": [uri, "https://x/y"]}


async def test_read_inline_body_refuses_a_changed_or_missing_file(tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(b"new bytes")
    with pytest.raises(InputChanged, match="changed since the job was made"):
        await read_inline_body({"image": _ref(path, b"old bytes")})
    with pytest.raises(InputChanged, match="is gone since the job was made"):
        await read_inline_body({"image": _ref(tmp_path / "gone.png", b"x")})
