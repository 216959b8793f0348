"""download() against small file servers on 127.0.0.1/127.0.0.2, plus the embed helpers."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from localserver import Handler, Server  # noqa: F401
from PIL import Image

from batch_runner.errors import DownloadError
from batch_runner.outputs.download import Downloaded, download
from batch_runner.outputs.embed import (
    jpeg_com_segment,
    png_text_chunk,
    read_jpeg_comments,
    read_png_text,
)
from batch_runner.outputs.hosts import HostPolicy


def image_bytes(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG = image_bytes("PNG"), image_bytes("JPEG")


def body(data: bytes, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, status=status, content_type="application/octet-stream")

    return handler


def local() -> HostPolicy:
    return HostPolicy(["127.0.0.1"])


async def fetch(session, url, images: Path, name="00001-fox", **kw) -> Downloaded:
    kw.setdefault("hosts", local())
    return await download(
        session, url, images_dir=images, name_for=lambda ext: f"{name}.{ext}", **kw
    )


def files_in(images: Path) -> list[str]:
    return sorted(str(p.relative_to(images)) for p in images.rglob("*") if p.is_file())


# ---- happy paths --------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "ext"), [(PNG, "png"), (JPEG, "jpg")])
async def test_downloads_verifies_and_renames(serve, session, tmp_path, data, ext):
    base, server = await serve(body(data))
    got = await fetch(session, base + "/f?sig=a%2Fb", tmp_path)
    assert got == Downloaded(
        tmp_path / f"00001-fox.{ext}",
        hashlib.sha256(data).hexdigest(),
        len(data),
        ext,
        f"00001-fox.{ext}",
    )
    assert got.path.read_bytes() == data
    assert files_in(tmp_path) == [f"00001-fox.{ext}"]
    assert "Authorization" not in server.seen[0]["headers"]


@pytest.mark.parametrize(
    ("head", "ext"),
    [(b"\x00\x00\x00\x18ftypmp42" + bytes(40), "mp4"), (b"\x1a\x45\xdf\xa3" + bytes(40), "webm")],
)
async def test_video_signatures(serve, session, tmp_path, head, ext):
    base, _ = await serve(body(head))
    assert (await fetch(session, base + "/v", tmp_path, parameters="ignored")).ext == ext


async def test_folders_in_names_are_created(serve, session, tmp_path):
    base, _ = await serve(body(PNG))
    got = await fetch(session, base + "/f", tmp_path, name="sweep-1/fox/00001")
    assert got.path == tmp_path / "sweep-1" / "fox" / "00001.png" and got.path.is_file()
    assert got.name == "sweep-1/fox/00001.png"


async def test_body_without_content_length(serve, session, tmp_path):
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(PNG), 50):  # small pieces: the head arrives in several
            await resp.write(PNG[start : start + 50])
        return resp

    base, _ = await serve(chunked)
    got = await fetch(session, base + "/f", tmp_path)
    assert (got.bytes, got.sha256) == (len(PNG), hashlib.sha256(PNG).hexdigest())
    assert got.path.read_bytes() == PNG and files_in(tmp_path) == ["00001-fox.png"]


async def test_replaces_an_existing_file(serve, session, tmp_path):
    (tmp_path / "00001-fox.png").write_bytes(b"partial junk")
    base, _ = await serve(body(PNG))
    got = await fetch(session, base + "/f", tmp_path)
    assert got.path.read_bytes() == PNG


async def test_no_authorization_even_from_a_session_with_cookies(serve, session, tmp_path):
    base, server = await serve(body(JPEG))
    await fetch(session, base + "/f", tmp_path)
    assert not {"Authorization", "authorization"} & set(server.seen[0]["headers"])


# ---- failures leave nothing behind ----------------------------------------------------------


async def test_truncated_leaves_no_file_and_no_part(serve, session, tmp_path):
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(PNG) * 4)})
        await resp.prepare(request)
        await resp.write(PNG)
        request.transport.close()
        return resp

    base, _ = await serve(cut)
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path)
    assert info.value.kind == "truncated"
    assert files_in(tmp_path) == []


async def test_bad_signature(serve, session, tmp_path):
    base, _ = await serve(body(b"GIF89a" + bytes(100)))
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path)
    assert info.value.kind == "bad_file" and files_in(tmp_path) == []


async def test_too_big_by_content_length(serve, session, tmp_path):
    base, _ = await serve(body(PNG))
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path, max_bytes=len(PNG) - 1)
    assert info.value.kind == "too_big" and files_in(tmp_path) == []


async def test_too_big_by_counting_a_chunked_body(serve, session, tmp_path):
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PNG)
        for _ in range(20):
            await resp.write(bytes(65536))
        return resp

    base, _ = await serve(chunked)
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path, max_bytes=200_000)
    assert info.value.kind == "too_big" and files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (403, "expired_url"),
        (404, "expired_url"),
        (410, "expired_url"),
        (429, "429"),
        (503, "5xx"),
        (400, "4xx"),
    ],
)
async def test_http_errors(serve, session, tmp_path, status, kind):
    base, _ = await serve(body(b"nope", status))
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path)
    assert (info.value.kind, info.value.status) == (kind, status) and files_in(tmp_path) == []


async def test_name_outside_images_dir_is_refused(serve, session, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    base, _ = await serve(body(PNG))
    for name in ("../escape", "/tmp/abs", "a/../../escape"):
        with pytest.raises(DownloadError) as info:
            await fetch(session, base + "/f", images, name=name)
        assert info.value.kind == "bad_name"
    assert files_in(tmp_path) == []


async def test_connection_refused(session, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        await fetch(session, f"http://127.0.0.1:{port}/f", tmp_path)
    assert info.value.kind == "dropped" and info.value.sent is False
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)


# ---- redirects and hosts ------------------------------------------------------------------


def redirect(to: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/file":
            return web.Response(body=PNG)
        raise web.HTTPFound(to)

    return handler


async def test_redirect_within_allowed_host(serve, session, tmp_path):
    base, server = await serve(redirect("/file"))
    got = await fetch(session, base + "/start", tmp_path)
    assert got.ext == "png" and [s["path"] for s in server.seen] == ["/start", "/file"]


async def test_redirect_to_other_host_is_refused(serve, session, tmp_path):
    other, elsewhere = await serve(body(PNG), "127.0.0.2")
    base, _ = await serve(redirect(other + "/file"))
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/start", tmp_path)
    assert info.value.kind == "host_refused" and elsewhere.seen == [] and files_in(tmp_path) == []


async def test_redirect_loop_stops(serve, session, tmp_path):
    base, server = await serve(redirect("/again"))
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/start", tmp_path)
    assert info.value.kind == "bad_redirect" and len(server.seen) == 6


async def test_refused_host_is_never_contacted(serve, session, tmp_path):
    base, server = await serve(body(PNG), "127.0.0.2")
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path)
    assert info.value.kind == "host_refused" and server.seen == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://files.runcomfy.net/a.png", True),
        ("https://a.b.runcomfy.com/x", True),
        ("http://files.runcomfy.net/a.png", False),  # https required
        ("https://runcomfy.net.evil.com/a.png", False),
        ("https://evilruncomfy.net/a.png", False),
        ("https://user@files.runcomfy.net/a.png", False),
        ("ftp://files.runcomfy.net/a.png", False),
        ("https://[::1/x", False),
        ("not a url", False),
    ],
)
def test_host_policy(url, ok):
    assert HostPolicy(["*.runcomfy.net", "*.runcomfy.com"], require_https=True).allows(url) is ok


def test_host_policy_remembers_origins_without_changing_an_answer():
    """One policy asked many URLs (its per-origin memory in play) answers as fresh ones do."""
    urls = [
        "https://files.runcomfy.net/a.png",
        "https://files.runcomfy.net/b.png?sig=1",
        "https://files.runcomfy.net?x=/y",
        "https://files.runcomfy.net#/frag",
        "https://user@files.runcomfy.net/a.png",
        "https://files.runcomfy.net.evil.com/a.png",
        "https://files.runcomfy.net:443/a.png",
        "http://files.runcomfy.net/a.png",
        " https://files.runcomfy.net/a.png",
        "https:/files.runcomfy.net/a.png",
        "https:files.runcomfy.net/a.png",
        "https://[::1/x",
        "https://files.runcomfy.net\\@evil.com/a.png",
        "https://evil.com\\@files.runcomfy.net/a.png",
    ]
    shared = HostPolicy(["*.runcomfy.net"], require_https=True)
    for url in urls * 2:
        fresh = HostPolicy(["*.runcomfy.net"], require_https=True)
        assert shared.allows(url) is fresh.allows(url), url  # fresh: nothing remembered


def test_host_policy_exact_hosts_any_port_http_allowed():
    policy = HostPolicy(["127.0.0.1", "Files.Example.org."])
    assert policy.allows("http://127.0.0.1:8123/x")
    assert policy.allows("https://files.example.org/x")
    assert not policy.allows("http://127.0.0.2/x")


# ---- embedding ----------------------------------------------------------------------------


async def test_png_parameters_readable_with_pillow(serve, session, tmp_path):
    base, _ = await serve(body(PNG))
    text = "A red fox in fresh snow\nresolution: 2K, seed: 7"
    got = await fetch(session, base + "/f", tmp_path, parameters=text)
    data = got.path.read_bytes()
    assert (got.bytes, got.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    with Image.open(got.path) as im:
        im.load()  # also verifies every chunk CRC
        assert im.text["parameters"] == text
    assert read_png_text(data) == {"parameters": text}


async def test_png_non_latin1_parameters_use_itxt(serve, session, tmp_path):
    base, _ = await serve(body(PNG))
    text = "狐狸 in snow — ü"
    got = await fetch(session, base + "/f", tmp_path, parameters=text)
    with Image.open(got.path) as im:
        im.load()
        assert im.text["parameters"] == text


async def test_jpeg_parameters_as_comment(serve, session, tmp_path):
    base, _ = await serve(body(JPEG))
    text = "A lighthouse at dusk — 3K"
    got = await fetch(session, base + "/f", tmp_path, parameters=text)
    data = got.path.read_bytes()
    assert read_jpeg_comments(data) == [text]
    with Image.open(got.path) as im:
        im.load()
        assert im.info["comment"] == text.encode("utf-8")
    assert got.bytes == len(data) == len(JPEG) + len(jpeg_com_segment(text))


def test_png_text_chunk_crc_and_layout():
    chunk = png_text_chunk("parameters", "hello")
    length, kind = struct.unpack(">I4s", chunk[:8])
    assert (kind, chunk[8 : 8 + length]) == (b"tEXt", b"parameters\x00hello")
    assert struct.unpack(">I", chunk[-4:])[0] == zlib.crc32(chunk[4:-4]) & 0xFFFFFFFF


def test_png_text_chunk_rejects_bad_keywords():
    for keyword in ("", "k" * 80, "a\x00b"):
        with pytest.raises(ValueError):
            png_text_chunk(keyword, "x")


def test_long_jpeg_comment_is_split_on_character_boundaries():
    text = "é" * 40_000 + "x" * 3  # 80,003 UTF-8 bytes: needs two segments
    segments = jpeg_com_segment(text)
    data = b"\xff\xd8" + segments + b"\xff\xd9"
    comments = read_jpeg_comments(data)
    assert len(comments) == 2 and "".join(comments) == text


def test_readers_tolerate_garbage():
    assert read_png_text(b"not a png") == {}
    assert read_png_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x05zTXtk\x00\x00zz") == {}
    assert read_jpeg_comments(b"\xff\xd8\xff\xfe\x00") == []


# ---- memory -------------------------------------------------------------------------------


async def test_fifty_megabytes_stream_with_flat_memory(serve, session, tmp_path):
    size = 50 * 1024 * 1024

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        await resp.write(PNG[:33])
        block = bytes(1 << 20)
        sent = 33
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            await resp.write(piece)
            sent += len(piece)
        return resp

    base, _ = await serve(big)
    tracemalloc.start()
    try:
        got = await fetch(session, base + "/big", tmp_path, parameters="p")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.bytes == size + len(png_text_chunk("parameters", "p"))
    assert peak < 12 * 1024 * 1024  # the server's 1 MB block and buffers, never the body


async def test_stalled_download_times_out_and_leaves_nothing(serve, session, tmp_path):
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(PNG) * 4)})
        await resp.prepare(request)
        await resp.write(PNG)
        await asyncio.sleep(5)  # the rest never comes in time
        return resp

    base, _ = await serve(stall)
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        await fetch(session, base + "/f", tmp_path, timeout=0.3)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 3
    assert files_in(tmp_path) == []


async def test_big_download_stalled_mid_stream_leaves_nothing(serve, session, tmp_path):
    """Cancelled while chunks are being written on a worker thread: the part file goes too."""

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(8 << 20)})
        await resp.prepare(request)
        await resp.write(PNG[:33] + bytes(3 << 20))
        await asyncio.sleep(1.5)  # past the client's time limit
        return resp

    base, _ = await serve(stall)
    task = asyncio.ensure_future(fetch(session, base + "/f", tmp_path, timeout=0.5))
    while not task.done() and not list(tmp_path.glob("*.part")):
        await asyncio.sleep(0.01)
    assert list(tmp_path.glob("*.part"))  # it was being written when the time ran out
    with pytest.raises(DownloadError) as info:
        await task
    assert info.value.kind == "timeout" and isinstance(info.value.__cause__, TimeoutError)
    assert files_in(tmp_path) == []
