"""The simulator takes the URLs of its own output files as media inputs while they live
(CONTRACT §5): past --url-ttl, or once the request is forgotten, such a URL is refused with
422001 naming the field; /_sim/stats counts own URLs and data: URIs among accepted inputs."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from batch_runner.simulator import SimConfig, start_simulator

pytestmark = pytest.mark.timeout(30)

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "alibaba/happyhorse-1.1/image-to-video"  # image_url: one image
AUTH = {"Authorization": "Bearer sim-token"}


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url, json=body, headers=AUTH) as r:
        return r.status, await r.json(content_type=None)


async def image_url(session: aiohttp.ClientSession, base: str) -> str:
    """The output URL of a finished text-to-image job."""
    _, sub = await post(session, f"{base}/v1/models/{T2I}", {"prompt": "a still"})
    async with asyncio.timeout(5):
        while True:
            async with session.get(sub["result_url"], headers=AUTH) as r:
                body = await r.json(content_type=None)
            if "output" in body:
                return body["output"]["image"]
            await asyncio.sleep(0.02)


def png_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), "red").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def expired(session: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(5):
        while True:
            async with session.get(url) as r:
                if r.status != 200:
                    return
            await asyncio.sleep(0.02)


async def test_own_urls_accepted_while_they_live_then_refused_422001():
    config = SimConfig(url_ttl=0.4, image_scale=0.02, seed=3)
    async with start_simulator(config) as sim, aiohttp.ClientSession() as session:
        url = await image_url(session, sim.base_url)
        submit = f"{sim.base_url}/v1/models/{I2V}"
        status, _ = await post(session, submit, {"prompt": "move", "image_url": url})
        assert status == 200
        status, _ = await post(session, submit, {"prompt": "inline", "image_url": png_uri()})
        assert status == 200
        status, _ = await post(
            session, submit, {"prompt": "far", "image_url": "https://e.com/a.png"}
        )
        assert status == 200
        stats = sim.stats()
        assert (stats["input_urls_own"], stats["input_data_uris"]) == (1, 1)
        await expired(session, url)
        status, body = await post(session, submit, {"prompt": "late", "image_url": url})
        assert status == 422 and body["error_code"] == 422001
        (detail,) = body["detail"]
        assert detail["loc"] == ["body", "image_url"] and detail["type"] == "url_fetch"
        assert "expired" in detail["msg"]
        stats = sim.stats()
        assert stats["input_urls_own"] == 1 and stats["submitted"] == 4  # refused: no job


async def test_own_url_of_a_forgotten_request_and_unknown_files_are_refused():
    config = SimConfig(request_ttl=0.3, image_scale=0.02, seed=3)
    async with start_simulator(config) as sim, aiohttp.ClientSession() as session:
        url = await image_url(session, sim.base_url)
        submit = f"{sim.base_url}/v1/models/{I2V}"
        for bad in (url.replace("/1.png", "/9.png"), f"{sim.base_url}/files/77/1.png"):
            status, body = await post(session, submit, {"prompt": "no", "image_url": bad})
            assert status == 422 and body["detail"][0]["type"] == "url_fetch", bad
        await expired(session, url)
        status, body = await post(session, submit, {"prompt": "gone", "image_url": url})
        assert status == 422 and body["error_code"] == 422001
        assert "NoSuchKey" in body["detail"][0]["msg"]
        assert sim.stats()["input_urls_own"] == 0
