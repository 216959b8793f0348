"""The simulator's outputs by model type, costs on results, the balance and 402, over sockets."""

from __future__ import annotations

import asyncio
import io
import struct
import wave
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from batch_runner.simulator import SimConfig, start_simulator
from batch_runner.simulator.av import MAX_WAV_SECONDS, WAV_RATE
from tests.test_simulator_catalog import AUDIO, SEEDREAM, VIDEO, Api, data_uri, png

pytestmark = pytest.mark.timeout(30)

GPT_IMAGE = "openai/gpt-image-2/text-to-image"  # output_format png|jpeg|webp
WAN_EDIT = "wan-ai/wan-2.7/edit"  # num_images 1..4
PRICES = {VIDEO: 0.1, AUDIO: 0.002, SEEDREAM: 0.03, GPT_IMAGE: 0.04, WAN_EDIT: 0.05}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    config = SimConfig(image_scale=0.02, seed=2, prices=PRICES, balance=10.0)
    async with start_simulator(config) as sim, aiohttp.ClientSession() as session:
        client = Api(session, sim.base_url)
        client.sim = sim  # type: ignore[attr-defined]
        yield client


async def finished(api: Api, model: str, body: dict[str, Any]) -> dict[str, Any]:
    status, sub = await api.submit(model, body)
    assert status == 200, sub
    path = sub["result_url"].removeprefix(api.base) + "?include_cost=true"
    async with asyncio.timeout(5):
        while True:
            _, result = await api.get(path)
            if "finished_at" in result:
                return result
            await asyncio.sleep(0.02)


def boxes(data: bytes) -> list[bytes]:
    """The top-level ISO-BMFF box types of an MP4."""
    found, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        found.append(kind)
        at += max(size, 8)
    return found


# --- outputs by output_type --------------------------------------------------------------------


async def test_video_model_returns_a_real_mp4(api):
    result = await finished(api, VIDEO, {"prompt": "waves", "duration": 3})
    assert set(result["output"]) == {"video"} and result["model_id"] == VIDEO
    data, ctype = await api.file(result["output"]["video"])
    assert ctype == "video/mp4" and data[4:8] == b"ftyp"
    assert {b"ftyp", b"moov", b"mdat"} <= set(boxes(data)) and len(data) < 20_000
    assert b"avc1" in data  # H.264 video track


async def test_audio_model_returns_a_real_wav(api):
    result = await finished(api, AUDIO, {"tags": "calm piano", "duration": 60})
    assert set(result["output"]) == {"audio"}
    data, ctype = await api.file(result["output"]["audio"])
    assert ctype == "audio/wav" and data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getframerate() == WAV_RATE and wav.getnchannels() == 1
        assert wav.getnframes() == WAV_RATE * MAX_WAV_SECONDS  # capped, not 60 s


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "png"])
async def test_image_formats(api, fmt):
    result = await finished(api, GPT_IMAGE, {"prompt": "a cat", "output_format": fmt})
    data, ctype = await api.file(result["output"]["image"])
    assert ctype == f"image/{fmt}"
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt.upper() and image.size == (20, 20)  # 1k square x 0.02


async def test_image_size_follows_aspect_ratio_or_the_input_image(api):
    body = {"prompt": "wide", "resolution": "2k", "aspect_ratio": "16:9"}
    result = await finished(api, GPT_IMAGE, body)
    data, _ = await api.file(result["output"]["image"])
    assert Image.open(io.BytesIO(data)).size == (41, 23)  # 2048x1152 x 0.02
    body = {"prompt": "edit", "image_urls": [data_uri(png(500, 250))], "num_images": 2}
    result = await finished(api, WAN_EDIT, body)
    assert len(result["output"]["images"]) == 2
    data, _ = await api.file(result["output"]["images"][0])
    assert Image.open(io.BytesIO(data)).size == (10, 5)  # the input's size x 0.02


async def test_pad_bytes_keeps_wav_readable():
    async with start_simulator(SimConfig(pad_bytes=100_000)) as sim, aiohttp.ClientSession() as s:
        api = Api(s, sim.base_url)
        result = await finished(api, AUDIO, {"tags": "x", "duration": 5})
        data, _ = await api.file(result["output"]["audio"])
        assert len(data) >= 100_000
        with wave.open(io.BytesIO(data)) as wav:
            assert wav.readframes(10)


# --- cost and balance --------------------------------------------------------------------------


async def test_costs_per_output_and_per_second(api):
    cases = [
        (VIDEO, {"prompt": "x", "duration": 4}, 0.4),
        (VIDEO, {"prompt": "x"}, 0.5),  # schema default duration 5
        (AUDIO, {"tags": "x", "duration": 30}, 0.06),
        (SEEDREAM, {"prompt": "x"}, 0.03),
        (WAN_EDIT, {"prompt": "x", "num_images": 3, "image_urls": ["https://e.com/a.png"]}, 0.15),
    ]
    for model, body, cost in cases:
        result = await finished(api, model, body)
        assert result["cost"] == pytest.approx(cost) and result["model_id"] == model
    result = await finished(api, SEEDREAM, {"prompt": "set", "sequential_image_generation": "auto"})
    assert result["cost"] == pytest.approx(0.03 * len(result["output"]["images"]))
    total = sum(c for _, _, c in cases) + result["cost"]
    stats = api.sim.stats()
    assert stats["charged_usd"] == pytest.approx(total)
    assert stats["balance_usd"] == pytest.approx(10.0 - total)
    status, balance = await api.get("/prod/v2/balance")
    micro = round(stats["balance_usd"] * 1_000_000)  # the exact figure too (CONTRACT §1)
    assert status == 200 and balance == {
        "balance_usd": stats["balance_usd"],
        "balance_microdollars": micro,
        "currency": "USD",
    }
    assert api.sim.stats()["requests"]["balance"] == 1


async def test_cost_only_when_asked_and_zero_unless_completed(api):
    _, sub = await api.submit(SEEDREAM, {"prompt": "x"})
    _, plain = await api.get(sub["result_url"].removeprefix(api.base))
    assert "cost" not in plain and plain["model_id"] == SEEDREAM
    failed = await finished(api, SEEDREAM, {"prompt": "x [sim:fail]"})
    assert failed["status"] == "failed" and failed["cost"] == 0
    await api.post("/_sim/config", {"capacity": 1, "latency": 30})
    await api.submit(SEEDREAM, {"prompt": "running"})
    _, queued = await api.submit(SEEDREAM, {"prompt": "queued"})
    _, pending = await api.get(queued["result_url"].removeprefix(api.base) + "?include_cost=true")
    assert pending["status"] == "in_queue" and "cost" not in pending
    await api.post(queued["cancel_url"].removeprefix(api.base))
    _, cancelled = await api.get(queued["result_url"].removeprefix(api.base) + "?include_cost=true")
    assert cancelled["status"] == "cancelled" and cancelled["cost"] == 0
    assert api.sim.stats()["charged_usd"] == pytest.approx(0.03)


async def test_insufficient_balance_gives_402_and_no_job(api):
    await api.post("/_sim/config", {"balance": 0.35})
    status, body = await api.submit(VIDEO, {"prompt": "x", "duration": 4})  # 0.40 > 0.35
    assert status == 402 and body == {"error_code": 400002, "error_message": "insufficient credits"}
    # the most a sequential job may return counts: 15 x 0.03 = 0.45
    body = {"prompt": "x", "sequential_image_generation": "auto"}
    assert (await api.submit(SEEDREAM, body))[0] == 402
    assert api.sim.stats()["submitted"] == 0
    result = await finished(api, VIDEO, {"prompt": "x", "duration": 3})  # 0.30 fits
    assert result["cost"] == pytest.approx(0.3)
    assert (await api.get("/prod/v2/balance"))[1]["balance_usd"] == pytest.approx(0.05)
    assert (await finished(api, SEEDREAM, {"prompt": "x"}))["cost"] == pytest.approx(0.03)
    assert (await api.submit(SEEDREAM, {"prompt": "x"}))[0] == 402  # 0.03 > 0.02 left
    assert api.sim.stats()["charged_usd"] == pytest.approx(0.33)


async def test_top_up_through_config(api):
    await api.post("/_sim/config", {"balance": 0.0})
    assert (await api.submit(SEEDREAM, {"prompt": "x"}))[0] == 402
    status, config = await api.post("/_sim/config", {"balance": 1.0})
    assert status == 200 and config["balance"] == 1.0
    assert (await finished(api, SEEDREAM, {"prompt": "x"}))["cost"] == pytest.approx(0.03)
    assert api.sim.stats()["balance_usd"] == pytest.approx(0.97)
