"""The simulator's catalogue, prices and per-model input validation, over real sockets."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from batch_runner import catalog
from batch_runner.errors import UsageError
from batch_runner.simulator import SimConfig, start_simulator
from batch_runner.simulator.models import PRICE_RANGES, default_price

NOT_RUNNABLE = [
    "runcomfy/inference/sdxl-lightning/text-to-image",
    "runcomfy/workflows/portrait-relight",
]

pytestmark = pytest.mark.timeout(30)

AUTH = {"Authorization": "Bearer sim-token"}
SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
EDIT = "bytedance/seedream-5.0-pro/image-to-image"  # `image`: image_uris with validations
AUDIO = "acestep-ai/ace-step-1.5/text-to-audio"  # requires `tags`, no `prompt`
VIDEO = "wan-ai/wan-3.0/text-to-video"
VIDEO_IN = "runwayml/runway-aleph-2/video-to-video"  # `video_url`: video_uri, file_size_mb< 16


class Api:
    """A tiny client for one simulator: JSON calls with the token."""

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session, self.base = session, base

    async def get(self, path: str, headers=AUTH) -> tuple[int, Any]:
        async with self.session.get(self.base + path, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def post(self, path: str, body: Any = None, headers=AUTH) -> tuple[int, Any]:
        async with self.session.post(self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def submit(self, model: str, body: dict[str, Any]) -> tuple[int, Any]:
        data = io.BytesIO(json.dumps(body).encode())  # streamed: inline media can be large
        url = f"{self.base}/v1/models/{model}"
        async with self.session.post(url, data=data, headers=AUTH) as r:
            return r.status, await r.json(content_type=None)

    async def file(self, url: str) -> tuple[bytes, str]:
        async with self.session.get(url) as r:
            assert r.status == 200
            return await r.read(), r.headers["Content-Type"]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    config = SimConfig(image_scale=0.02, seed=1, prices={VIDEO: 0.1})
    async with start_simulator(config) as sim, aiohttp.ClientSession() as session:
        client = Api(session, sim.base_url)
        client.sim = sim  # type: ignore[attr-defined]
        yield client


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


# --- catalogue ---------------------------------------------------------------------------------


async def test_listing_pages_through_the_whole_catalogue(api):
    seen: list[str] = []
    offset = 0
    while True:
        status, page = await api.get(f"/v1/models?limit=50&offset={offset}")
        assert status == 200 and page["limit"] == 50 and page["offset"] == offset
        # the bundled 121 models and the two endpoints the Model API does not run
        assert page["total"] == len(catalog.bundled()) + 2 == 123
        seen += [m["model_id"] for m in page["models"]]
        if len(page["models"]) < 50:
            break
        offset += 50
    assert seen == sorted([*catalog.bundled(), *NOT_RUNNABLE])
    first = page["models"][0]
    assert set(first) == {  # the live shape: no output_type
        "model_id",
        "display_name",
        "description",
        "model_url",
        "kind",
        "categories",
        "base_price_usd",
        "price_unit",
        "pricing_note",
    }
    assert api.sim.stats()["requests"]["catalog"] == 3


async def test_listing_search_kind_and_schema(api):
    status, page = await api.get("/v1/models?search=seedream%20lite&include_schema=true")
    assert status == 200 and [m["model_id"] for m in page["models"]] == [SEEDREAM]
    assert page["models"][0]["input_schema"]["properties"]["resolution"]["enum"][0] == "2K"
    _, page = await api.get("/v1/models?kind=model&limit=500")
    assert page["total"] == len(page["models"]) == 121
    for kind, count, unit in (
        ("image", 25, "output"),
        ("video", 90, "second"),
        ("audio", 6, "second"),
    ):
        # the media kind comes from the categories (the one a category names last)
        found = [m for m in page["models"] if m["categories"][0].endswith(kind)]
        assert len(found) == count and {len(m["categories"]) for m in found} == {1}
        assert {m["price_unit"] for m in found} == {unit}
        assert {catalog.entry_from(m, "live").kind for m in found} == {kind}
    _, page = await api.get("/v1/models?category=image-to-video&limit=500")
    assert page["total"] > 10
    assert all("image-to-video" in m["categories"] for m in page["models"])
    _, page = await api.get("/v1/models?kind=workflow")
    assert [m["model_id"] for m in page["models"]] == [NOT_RUNNABLE[1]]
    status, body = await api.get("/v1/models/categories")
    assert status == 200 and "text-to-image" in body["categories"]
    assert "image-to-video" in body["categories"]
    _, page = await api.get("/v1/models?search=no-such-model-anywhere")
    assert page == {"models": [], "total": 0, "limit": 100, "offset": 0}


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "limit=x", "offset=-1", "kind=pictures", "kind=image"]
)
async def test_listing_refuses_bad_paging(api, query):
    status, body = await api.get(f"/v1/models?{query}")
    name = query.split("=")[0]
    assert status == 422 and body["error_code"] == 422001
    assert body["detail"][0]["loc"] == ["query", name]


async def test_single_entry_and_unknown_model(api):
    status, entry = await api.get(f"/v1/models/{AUDIO}")
    assert status == 200 and entry["model_id"] == AUDIO and "output_type" not in entry
    assert entry["kind"] == "model" and entry["categories"] == ["text-to-audio"]
    assert entry["input_schema"]["required"] == ["tags"] and entry["price_unit"] == "second"
    status, body = await api.get("/v1/models/acme/nothing/here")
    assert status == 404 and body["error_code"] == 400001
    status, body = await api.get(f"/v1/models/{AUDIO}", headers={})
    assert status == 401 and body["error_code"] == 400004


async def test_get_and_post_on_one_model_path_are_entry_and_submit(api):
    status, entry = await api.get(f"/v1/models/{SEEDREAM}")
    assert status == 200 and "request_id" not in entry
    status, sub = await api.submit(SEEDREAM, {"prompt": "a fox"})
    assert status == 200 and sub["request_id"]


# --- prices ------------------------------------------------------------------------------------


def test_default_prices_are_stable_and_in_range():
    for model, entry in catalog.bundled().items():
        price = default_price(model, entry.output_type or "IMAGE")
        low, high = PRICE_RANGES[entry.output_type or "IMAGE"]
        assert low <= price <= high and price == round(price, 4)
        assert price == default_price(model, entry.output_type or "IMAGE")
    assert len({default_price(m, "VIDEO") for m in catalog.bundled()}) > 50


async def test_price_flag_sets_one_model(api):
    _, entry = await api.get(f"/v1/models/{VIDEO}")
    assert entry["base_price_usd"] == 0.1 and "0.1" in entry["pricing_note"]
    _, other = await api.get(f"/v1/models/{SEEDREAM}")
    assert other["base_price_usd"] == default_price(SEEDREAM, "IMAGE")


def test_price_and_balance_flags_and_help():
    import argparse

    from batch_runner.simulator import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--price", f"{VIDEO}=0.25", "--price", "a/b=1", "--balance", "7"])
    config = config_from_args(args)
    assert config.prices == {VIDEO: 0.25, "a/b": 1.0} and config.balance == 7.0
    for bad in (
        ["--price", "nomodel"],
        ["--price", "m=x"],
        ["--price", "m=-1"],
        ["--balance", "-5"],
    ):
        with pytest.raises(UsageError):
            config_from_args(parser.parse_args(bad))
    shown = subprocess.run(
        [sys.executable, "-m", "batch_runner", "simulate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "made-up" in " ".join(shown.split())


# --- live catalogue overrides ------------------------------------------------------------------


async def test_config_models_override_is_served_and_validated_against(api):
    schema = {
        "type": "object",
        "required": ["prompt", "mood"],
        "properties": {"prompt": {"type": "string"}, "mood": {"enum": ["calm", "wild"]}},
    }
    overrides = {
        "models": {
            SEEDREAM: {"input_schema": schema, "base_price_usd": 0.5},
            "acme/new/model": {"output_type": "AUDIO", "display_name": "New"},
        }
    }
    status, _ = await api.post("/_sim/config", overrides)
    assert status == 200
    _, entry = await api.get(f"/v1/models/{SEEDREAM}")
    assert entry["input_schema"] == schema and entry["base_price_usd"] == 0.5
    assert "0.5" in entry["pricing_note"]
    _, page = await api.get("/v1/models?search=acme")
    assert page["models"][0]["display_name"] == "New"
    assert page["models"][0]["price_unit"] == "second"
    status, body = await api.submit(SEEDREAM, {"prompt": "x"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "mood"]
    assert (await api.submit(SEEDREAM, {"prompt": "x", "mood": "calm"}))[0] == 200
    assert (await api.submit("acme/new/model", {"anything": 1}))[0] == 200
    for bad in ({"models": []}, {"models": {"m": {"input_schema": 3}}}, {"prices": {"m": "x"}}):
        assert (await api.post("/_sim/config", bad))[0] == 400
    await api.post("/_sim/config", {"models": {}})
    _, entry = await api.get(f"/v1/models/{SEEDREAM}")
    assert entry["input_schema"] == catalog.bundled_schema(SEEDREAM)


# --- validation per model ----------------------------------------------------------------------


async def test_each_model_is_validated_with_its_own_schema(api):
    status, body = await api.submit(AUDIO, {"prompt": "a song"})
    assert status == 422 and body["error_code"] == 422001
    locs = {tuple(d["loc"]): d["type"] for d in body["detail"]}
    assert locs == {("body", "tags"): "missing", ("body", "prompt"): "extra"}
    assert (await api.submit(AUDIO, {"tags": "calm piano"}))[0] == 200
    status, body = await api.submit(VIDEO, {"prompt": "x", "resolution": "8k", "duration": 99})
    assert status == 422
    detail = {d["loc"][1]: d for d in body["detail"]}
    assert detail["resolution"]["type"] == "enum" and "720p" in detail["resolution"]["msg"]
    assert detail["duration"]["type"] == "maximum"
    status, body = await api.submit("acme/unknown/model", {"prompt": "x"})
    assert status == 400 and body["error_code"] == 400001
    assert api.sim.stats()["submitted"] == 1


async def test_omitted_inputs_are_free_json(api):
    model = next(
        m for m, e in catalog.bundled().items() if (e.input_schema or {}).get("omitted_inputs")
    )
    entry = catalog.bundled()[model]
    body: dict[str, Any] = {"prompt": "x"} if "prompt" in entry.required else {}
    for name in entry.required:
        fmt = catalog.media_fields(entry.input_schema).get(name)
        body.setdefault(
            name, ["https://example.com/a.png"] if fmt and fmt[1] else "https://example.com/a.png"
        )
    for name in entry.input_schema["omitted_inputs"]:
        body[name] = [{"any": ["json", 1, None]}]
    status, answer = await api.submit(model, body)
    assert status == 200, answer


# --- media inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "accepted", "rule"),
    [
        ("https://example.com/picture.png", True, None),
        (data_uri(png(20, 20)), True, None),
        (data_uri(png(10, 10)), False, "width_pixels>"),
        (data_uri(png(400, 20)), False, "width/height<"),
        (
            data_uri(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "image/png"),
            False,
            "media_kind",
        ),
        ("http://example.com/picture.png", False, "url_scheme"),
        ("file:///etc/passwd", False, "url_scheme"),
        ("pictures/fox.png", False, "url_scheme"),
        ("data:image/png;base64,@@@", False, "data_uri"),
    ],
)
async def test_image_inputs(api, value, accepted, rule):
    status, body = await api.submit(EDIT, {"prompt": "edit", "image": [value]})
    if accepted:
        assert status == 200, body
        return
    assert status == 422 and body["error_code"] == 422001
    (detail,) = body["detail"]
    assert detail["loc"] == ["body", "image", 0]
    assert rule in detail["type"] and (
        rule in detail["msg"] or rule in {"media_kind", "url_scheme", "data_uri"}
    )


async def test_video_inputs_by_kind_and_size(api):
    mp4 = (await api.file(await _video_url(api)))[0]
    ok = await api.submit(VIDEO_IN, {"prompt": "x", "video_url": data_uri(mp4, "video/mp4")})
    assert ok[0] == 200
    status, body = await api.submit(VIDEO_IN, {"prompt": "x", "video_url": data_uri(png(20, 20))})
    assert status == 422 and "expected video" in body["detail"][0]["msg"]
    big = mp4 + b"\x00" * (16 * 1024 * 1024)
    status, body = await api.submit(
        VIDEO_IN, {"prompt": "x", "video_url": data_uri(big, "video/mp4")}
    )
    assert status == 422 and "file_size_mb<" in body["detail"][0]["msg"]


async def _video_url(api: Api) -> str:
    _, sub = await api.submit(VIDEO, {"prompt": "a clip"})
    _, result = await api.get(sub["result_url"].removeprefix(api.base))
    return result["output"]["video"]
