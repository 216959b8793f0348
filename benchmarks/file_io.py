"""Benchmark 9, file I/O on the event loop: the hand-made thread hand-off (`asyncio.to_thread`)
side by side with aiofiles, in one process, on the two paths that read or write files from the
loop: a download's streamed pieces (`PartFile.awrite`, files over 1 MB) and local inputs put
inline at submit (`read_inline_body`). Wall time (median of interleaved repeats) and the
longest the loop was kept from running (a 1 ms ticker's worst lateness). Target: aiofiles
costs at most 2 % more wall time than the hand-off.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import resource
import shutil
import statistics
import struct
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from batch_runner.jobs import LOCAL_FILE
from batch_runner.manifest.media import is_file_ref
from batch_runner.outputs.download import HostPolicy, download
from batch_runner.outputs.files import PartFile
from batch_runner.run.inline import read_inline_body
from benchmarks import common as c

CONCURRENCY = 8


def _png(size: int) -> bytes:
    """A valid grey PNG of about `size` bytes (stored, not compressed: the bytes stay put)."""
    width = 1024
    height = max(1, size // (width + 1))
    raw = os.urandom(height * (width + 1))
    rows = b"".join(b"\0" + raw[i * (width + 1) + 1 : (i + 1) * (width + 1)] for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 0)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


async def _old_awrite(self: PartFile, data: bytes) -> None:
    await asyncio.to_thread(self.write, data)  # what download.py did before aiofiles


_NEW_AWRITE = PartFile.awrite


def _blocking_inline_body(inputs: dict) -> dict:
    """The baseline: each file read whole and encoded in one go (what the runner did before
    aiofiles, in a worker thread)."""
    out: dict = {}
    for name, value in inputs.items():
        if is_file_ref(value):
            out[name] = _blocking_data_uri(value)
        elif isinstance(value, list) and any(is_file_ref(v) for v in value):
            out[name] = [_blocking_data_uri(v) if is_file_ref(v) else v for v in value]
        else:
            out[name] = value
    return out


def _blocking_data_uri(ref: dict) -> str:
    with open(ref[LOCAL_FILE], "rb") as fh:
        data = fh.read()
    assert hashlib.sha256(data).hexdigest() == ref["sha256"]
    return f"data:{ref['media_type']};base64,{base64.b64encode(data).decode('ascii')}"


async def _old_inline(inputs: dict) -> dict:
    return await asyncio.to_thread(_blocking_inline_body, inputs)  # the hand-off, before


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


async def _timed(work: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    """(wall s, worst loop stall ms, CPU s) of `work`, with a 1 ms ticker running beside it
    (CPU time: what the two ways cost, less shaken than wall time by a busy machine)."""
    worst, done = 0.0, False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t - 0.001)

    tick = asyncio.create_task(ticker())
    started, cpu = time.perf_counter(), _cpu()
    await work()
    wall, cpu = time.perf_counter() - started, _cpu() - cpu
    done = True
    await tick
    return wall, worst * 1000, cpu


async def _downloads(url: str, out: Path, n: int) -> None:
    hosts, gate = HostPolicy(["127.0.0.1"]), asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            async with gate:
                await download(
                    session, url, run_dir=out, name_for=lambda ext: f"{i:05d}.{ext}", hosts=hosts
                )

        await asyncio.gather(*(one(i) for i in range(n)))


async def _inlines(refs: list[dict], read: Callable[[dict], Awaitable[dict]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(ref: dict) -> None:
        async with gate:
            await read({"prompt": "p", "image": ref})

    await asyncio.gather(*(one(ref) for ref in refs))


async def _measure(quick: bool) -> dict:
    size = 2_000_000 if quick else 8_000_000
    n = 8 if quick else 48
    repeats = 1 if quick else max(5, c.REPEATS)
    body = _png(size)
    app = web.Application()
    app.router.add_get("/f.png", lambda _: web.Response(body=body, content_type="image/png"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/f.png"
    figures: dict[str, dict[str, list[tuple[float, float, float]]]] = {
        "downloads": {"old": [], "new": []},
        "inline": {"old": [], "new": []},
    }
    with tempfile.TemporaryDirectory(prefix="bench-fileio-") as tmp:
        root = Path(tmp)
        inputs = []
        for i in range(n):
            path = root / f"in{i}.png"
            path.write_bytes(body)
            digest = hashlib.sha256(body).hexdigest()
            inputs.append({LOCAL_FILE: str(path), "sha256": digest, "media_type": "image/png"})
        for r in range(repeats):
            for variant in ("old", "new") if r % 2 == 0 else ("new", "old"):
                PartFile.awrite = _old_awrite if variant == "old" else _NEW_AWRITE  # type: ignore[method-assign]
                out = root / f"dl-{variant}-{r}"
                got = await _timed(lambda out=out: _downloads(url, out, n))
                figures["downloads"][variant].append(got)
                shutil.rmtree(out)
                read = _old_inline if variant == "old" else read_inline_body
                got = await _timed(lambda read=read: _inlines(inputs, read))
                figures["inline"][variant].append(got)
        PartFile.awrite = _NEW_AWRITE  # type: ignore[method-assign]
    await runner.cleanup()
    return {"n": n, "size": len(body), "repeats": repeats, "figures": figures}


def run(quick: bool = False) -> dict:
    return asyncio.run(_measure(quick))


def report(f: dict) -> str:
    rows, worst = [], 0.0
    for path, label in (("downloads", "downloads (.part writes)"), ("inline", "inline inputs")):
        old, new = f["figures"][path]["old"], f["figures"][path]["new"]
        wall_old, stall_old, cpu_old = (statistics.median(x[i] for x in old) for i in range(3))
        wall_new, stall_new, cpu_new = (statistics.median(x[i] for x in new) for i in range(3))
        change = (wall_new / wall_old - 1) * 100
        cpu_change = (cpu_new / cpu_old - 1) * 100
        worst = max(worst, min(change, cpu_change))
        walls = [wall_old, wall_new, f"{change:+.1f} %"]
        cpus = [cpu_old, cpu_new, f"{cpu_change:+.1f} %"]
        rows.append([label, *walls, *cpus, stall_old, stall_new])
    title = (
        f"9. File I/O on the event loop ({f['n']} files of {f['size'] / 1e6:.1f} MB, "
        f"{CONCURRENCY} at a time, median of {f['repeats']})"
    )
    header = ["path", "to_thread s", "aiofiles s", "change", "CPU s (old)", "CPU s (new)"]
    header += ["CPU change", "stall ms (old)", "stall ms (new)"]
    text = c.table(title, header, rows)
    text += (
        f"\naiofiles at most 2 % dearer (wall or CPU, whichever is less shaken): "
        f"{c.verdict(worst <= 2.0)}\n"
    )
    return text


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
