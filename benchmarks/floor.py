"""The floor: the least code that does a batch's work (submit → poll /result → download).

aiohttp, one session, `--concurrency` workers, no state file, no retries, no progress.
Poll policy: the first /result poll goes out immediately after the submit, then one every
0.05 s until the job is finished. Prints {"jobs", "files", "wall_seconds"} as JSON.

    RUNCOMFY_API_TOKEN=sim-token RUNCOMFY_API_BASE=http://127.0.0.1:PORT \
        python -m benchmarks.floor PROMPTS.txt OUT_DIR --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp

MODEL = "bytedance/seedream-5/lite/text-to-image"
POLL_EVERY = 0.05


def _urls(output: dict) -> list[str]:
    found: list[str] = []
    for name in ("image", "images", "video", "videos"):
        value = output.get(name)
        found.extend([value] if isinstance(value, str) else value or [])
    return found


async def _job(session: aiohttp.ClientSession, base: str, n: int, prompt: str, out: Path) -> int:
    auth = {"Authorization": f"Bearer {os.environ['RUNCOMFY_API_TOKEN']}"}
    body = {"prompt": prompt, "resolution": "2048x2048 (1:1)", "output_format": "png"}
    async with session.post(f"{base}/v1/models/{MODEL}", json=body, headers=auth) as r:
        request_id = (await r.json())["request_id"]
    while True:
        async with session.get(f"{base}/v1/requests/{request_id}/result", headers=auth) as r:
            answer = await r.json()
        if answer["status"] in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(POLL_EVERY)
    urls = _urls(answer.get("output") or {})
    for k, url in enumerate(urls, 1):
        async with session.get(url) as r:  # the file host gets no token
            (out / f"{n:05d}-{k}.png").write_bytes(await r.read())
    return len(urls)


async def main(prompts: list[str], out: Path, concurrency: int) -> dict:
    base = os.environ["RUNCOMFY_API_BASE"].rstrip("/")
    todo = iter(enumerate(prompts, 1))
    files = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal files
        for n, prompt in todo:
            got = await _job(session, base, n, prompt, out)
            files += got

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"jobs": len(prompts), "files": files, "wall_seconds": round(wall, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prompts", type=Path, help="one prompt per line")
    parser.add_argument("out", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = args.prompts.read_text(encoding="utf-8").splitlines()
    print(json.dumps(asyncio.run(main(lines, args.out, args.concurrency))))
