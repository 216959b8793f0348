"""The baseline poller: the official CLI's policy (poll /status every 2 s, then /result once).

aiohttp, `--concurrency` workers, no state. The first /status poll goes out 2 s after the
submit. Writes one file per job and `downloads.jsonl` ({"request_id", "file"}) so detection
delays can be measured; prints {"jobs", "files", "wall_seconds"} as JSON.

    RUNCOMFY_API_TOKEN=sim-token RUNCOMFY_API_BASE=http://127.0.0.1:PORT \
        python -m benchmarks.status_poller PROMPTS.txt OUT_DIR --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp

from benchmarks.floor import MODEL, _urls

POLL_EVERY = 2.0


async def _job(
    session: aiohttp.ClientSession, base: str, n: int, prompt: str, out: Path
) -> dict[str, str] | None:
    auth = {"Authorization": f"Bearer {os.environ['RUNCOMFY_API_TOKEN']}"}
    body = {"prompt": prompt, "resolution": "2048x2048 (1:1)", "output_format": "png"}
    async with session.post(f"{base}/v1/models/{MODEL}", json=body, headers=auth) as r:
        request_id = (await r.json())["request_id"]
    while True:
        await asyncio.sleep(POLL_EVERY)
        async with session.get(f"{base}/v1/requests/{request_id}/status", headers=auth) as r:
            status = (await r.json())["status"]
        if status in ("completed", "failed", "cancelled"):
            break
    async with session.get(f"{base}/v1/requests/{request_id}/result", headers=auth) as r:
        answer = await r.json()
    urls = _urls(answer.get("output") or {})
    if not urls:
        return None
    path = out / f"{n:05d}.png"
    async with session.get(urls[0]) as r:
        path.write_bytes(await r.read())
    return {"request_id": request_id, "file": path.name}


async def main(prompts: list[str], out: Path, concurrency: int) -> dict:
    base = os.environ["RUNCOMFY_API_BASE"].rstrip("/")
    todo = iter(enumerate(prompts, 1))
    done: list[dict[str, str]] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        for n, prompt in todo:
            row = await _job(session, base, n, prompt, out)
            if row is not None:
                done.append(row)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    lines = "".join(json.dumps(row) + "\n" for row in done)
    (out / "downloads.jsonl").write_text(lines, encoding="utf-8")
    return {"jobs": len(prompts), "files": len(done), "wall_seconds": round(wall, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prompts", type=Path, help="one prompt per line")
    parser.add_argument("out", type=Path)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = args.prompts.read_text(encoding="utf-8").splitlines()
    print(json.dumps(asyncio.run(main(lines, args.out, args.concurrency))))
