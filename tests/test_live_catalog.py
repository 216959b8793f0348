"""The catalogue in RunComfy's live shape (CONTRACT §1): `kind` and `categories` instead of
`output_type`, numbers typed "float", sample URLs as media defaults, workflow endpoints,
paging by `total`, `balance_microdollars`; served by a server that is not our simulator
(tests/localserver.py), by `simulate --catalog FILE`, and read from a `--schema` file."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from conftest import CLI, run_cli, sim_env
from mediafiles import image

from batch_runner import catalog
from batch_runner.api.client import RunComfyClient
from batch_runner.catalog_shape import normalised_schema, output_type_of
from batch_runner.errors import ApiError
from batch_runner.simulator.av import mp4_bytes

pytestmark = pytest.mark.timeout(120)

TOKEN = "live-token"
SAMPLE = "https://playgrounds-storage-public.runcomfy.net/tools/7063/input-1.png"
T2I = "acme/flux-x/text-to-image"
I2V = "acme/clip-x/image-to-video"
FLOW = "acme/flows/relight"
BOTH = "acme/omni-x/text-to-any"  # categories naming two kinds: its kind is unknown
SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
PROMPT = {"prompt": {"type": "string"}}
LIVE: list[dict[str, Any]] = [
    {
        "model_id": T2I,
        "display_name": "Flux X",
        "kind": "model",
        "categories": ["text-to-image"],
        "base_price_usd": 0.02,
        "price_unit": "output",
        "input_schema": {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                **PROMPT,
                "guidance_scale": {"type": "float", "minimum": 0, "maximum": 20, "default": 2.5},
                "seed": {"type": "integer", "default": None},
            },
        },
    },
    {
        "model_id": I2V,
        "display_name": "Clip X",
        "kind": "model",
        "categories": ["image-to-video"],
        "base_price_usd": 0.1,
        "price_unit": "second",
        "input_schema": {
            "type": "object",
            "required": ["prompt", "image_url"],
            "properties": {
                **PROMPT,
                "image_url": {"type": "string", "format": "image_uri", "default": SAMPLE},
                "end_image_url": {"type": "string", "format": "image_uri", "default": SAMPLE},
                "duration": {"type": "float", "enum": [5, 10], "default": 5},
                "multi_prompt": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"prompt": {"type": "string"}}},
                },
            },
        },
    },
    {
        "model_id": FLOW,
        "kind": "workflow",
        "categories": ["image-to-image"],
        "input_schema": {"type": "object", "properties": PROMPT},
    },
    {
        "model_id": BOTH,
        "kind": "model",
        "categories": ["text-to-image", "text-to-video"],
        "input_schema": {"type": "object", "required": ["prompt"], "properties": PROMPT},
    },
]


class LiveApi:
    """A RunComfy look-alike: the live catalogue (two entries per page, whatever the limit
    asked: only `total` says when the listing ends), submits, results, files, balance."""

    def __init__(self, micro: int = 10**12):
        self.micro = micro
        self.queries: list[dict[str, list[str]]] = []
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/files/"):
            data = mp4_bytes() if request.path.endswith(".mp4") else image("PNG")
            return web.Response(body=data)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error_code": 400004, "message": "bad token"}, status=401)
        path = request.path
        if path == "/prod/v2/balance":
            body = {"balance_usd": 1000.0, "balance_microdollars": self.micro, "currency": "USD"}
            return web.json_response(body)
        if path == "/v1/models":
            return self.listing(request)
        if path == "/v1/models/categories":
            return web.json_response(
                {"categories": sorted({c for e in LIVE for c in e["categories"]})}
            )
        if path.startswith("/v1/models/"):
            return await self.model(request, path.removeprefix("/v1/models/"))
        return self.result(request, path.split("/")[3])

    def listing(self, request: web.Request) -> web.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        self.queries.append(query)
        found = [e for e in LIVE if e["kind"] in query.get("kind", [e["kind"]])]
        found = [
            e for e in found if set(query.get("category", e["categories"])) & set(e["categories"])
        ]
        offset = int(query["offset"][0])
        page = found[offset : offset + 2]
        return web.json_response(
            {"models": page, "total": len(found), "limit": 2, "offset": offset}
        )

    async def model(self, request: web.Request, model: str) -> web.Response:
        entry = next((e for e in LIVE if e["model_id"] == model), None)
        if request.method == "GET":
            if entry is None:
                return web.json_response({"error_code": 400001, "message": "not found"}, status=404)
            return web.json_response(entry)
        if entry is None or entry["kind"] != "model":
            return web.json_response({"error_code": 400001, "message": "unknown"}, status=400)
        self.posts.append((model, await request.json()))
        return web.json_response({"request_id": f"r{len(self.posts) - 1}"})

    def result(self, request: web.Request, request_id: str) -> web.Response:
        model = self.posts[int(request_id[1:])][0]
        ext = "mp4" if model == I2V else "png"
        output = {
            "video" if ext == "mp4" else "image": f"http://{request.host}/files/{request_id}.{ext}"
        }
        body = {"request_id": request_id, "status": "completed", "output": output, "cost": 0.02}
        return web.json_response(body)


async def cli(*args: Any, base: str) -> tuple[int, str, str]:
    """The console script against `base` (the server runs on this test's event loop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env["RUNCOMFY_API_TOKEN"] = TOKEN
    proc = await asyncio.create_subprocess_exec(
        CLI, *map(str, args), "--api-base", base,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert "Traceback" not in err.decode()
    return proc.returncode or 0, out.decode(), err.decode()


# --- reading the live shape (pure) -------------------------------------------------------------


def test_kind_from_categories_and_schema_as_json_schema_reads_it():
    assert output_type_of({"categories": ["image-to-video"]}) == "VIDEO"
    assert output_type_of({"categories": ["text-to-audio"], "output_type": "IMAGE"}) == "AUDIO"
    assert output_type_of({"categories": ["text-to-image", "text-to-video"]}) is None
    assert output_type_of({"categories": ["upscale"]}) is None
    assert output_type_of({"output_type": "VIDEO"}) == "VIDEO"  # the bundled file's way
    schema = normalised_schema(LIVE[1]["input_schema"])
    props = schema["properties"]
    assert props["duration"]["type"] == "number" and "default" not in props["image_url"]
    assert props["image_url"]["examples"] == [SAMPLE]
    assert LIVE[1]["input_schema"]["properties"]["image_url"]["default"] == SAMPLE  # a copy
    odd = normalised_schema({"type": "object", "properties": {"x": {"type": ["float", "null"]}}})
    assert odd["properties"]["x"]["type"] == ["number", "null"]
    entry = catalog.entry_from(LIVE[2], "live")
    assert entry is not None and not entry.runnable and entry.kind == "image"


# --- a live catalogue served by a server that is not our simulator -----------------------------


async def test_models_read_the_live_catalogue_as_runcomfy_serves_it(serve):
    api = LiveApi()
    base, _ = await serve(api)
    code, out, err = await cli("models", "--json", base=base)
    assert code == 0, err
    listed = {m["model_id"]: m for m in json.loads(out)["models"]}
    assert set(listed) == {T2I, I2V, BOTH}  # the workflow is left out, the bundled too
    assert listed[I2V]["output_type"] == "VIDEO" and listed[I2V]["required"] == [
        "prompt",
        "image_url",
    ]
    assert listed[BOTH]["output_type"] is None and listed[T2I]["output_type"] == "IMAGE"
    assert len(api.queries) == 2  # paged by `total`: two entries a page
    code, out, _ = await cli("models", "--kind", "video", "--json", base=base)
    assert [m["model_id"] for m in json.loads(out)["models"]] == [I2V]
    code, out, _ = await cli("models", "--category", "image-to-video", "--json", base=base)
    assert [m["model_id"] for m in json.loads(out)["models"]] == [I2V]
    assert api.queries[-1]["category"] == ["image-to-video"]
    # the media kind is never a query: kind= is the endpoint kind
    assert all(q.get("kind") in (None, ["model"]) for q in api.queries)
    code, out, _ = await cli("models", I2V, base=base)
    rows = {line.split()[0]: line for line in out.splitlines()[4:]}
    assert code == 0 and f"{I2V} (video; image-to-video; from the cache catalogue)" in out
    assert rows["duration"].split()[1] == "number" and "5, 10" in rows["duration"]
    assert SAMPLE not in out and rows["image_url"].split()[1:3] == ["string", "yes"]
    code, _, err = await cli("models", "acme/flux-x/text-to-imag", base=base)
    assert code == 2 and f"did you mean '{T2I}'" in err


async def test_validate_and_run_against_the_live_catalogue(serve, tmp_path):
    api = LiveApi()
    base, _ = await serve(api)
    (tmp_path / "still.png").write_bytes(image("PNG", (32, 32)))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"model: {T2I}\njobs:\n  - prompt: a\n    guidance_scale: high\n"
        "  - {prompt: b, guidance_scale: 2.5}\n"
        f"  - {{prompt: c, model: {FLOW}}}\n"
        f"  - {{prompt: d, image_url: still.png, model: {I2V}}}\n"
        "  - {prompt: e, model: acme/flux-x/text-to-imag}\n",
        encoding="utf-8",
    )
    code, _, err = await cli("validate", bad, base=base)
    assert code == 2
    assert f"{bad}:4: model {T2I}: guidance_scale: must be a number, not 'high'" in err
    assert f"{bad}:6: model {FLOW}: a workflow endpoint, not a model" in err
    assert f"{bad}:8: model acme/flux-x/text-to-imag: unknown model (did you mean '{T2I}'" in err
    assert f"{bad}:5" not in err and f"{bad}:7" not in err
    code, _, err = await cli("run", bad, "--out", tmp_path / "bad", base=base)
    assert code == 2 and api.posts == []  # nothing sent
    good = tmp_path / "good.yaml"
    good.write_text(
        f"model: {I2V}\njobs:\n"
        "  - {prompt: a fox runs, image_url: still.png, multi_prompt: [{prompt: run}]}\n"
        f"  - {{prompt: b, model: {T2I}, guidance_scale: 2.5}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    code, stdout, err = await cli(
        "run", good, "--out", out, "--json", "--account-base", base, base=base
    )
    assert code == 0, err
    assert "estimated cost of 2 jobs: $0.52" in err  # 5 s (the float default) x $0.1 + $0.02
    sent = dict(api.posts)
    assert sent[I2V]["image_url"].startswith("data:image/png;base64,")
    assert "end_image_url" not in sent[I2V] and SAMPLE not in json.dumps(sent)  # never sent
    assert sent[I2V]["multi_prompt"] == [{"prompt": "run"}] and sent[T2I]["guidance_scale"] == 2.5
    # the folder the category predicts
    assert len(list((out / "videos").glob("*.mp4"))) == 1
    assert len(list((out / "images").glob("*.png"))) == 1


async def test_the_exact_balance_is_preferred(serve, tmp_path):
    api = LiveApi(micro=10_000)  # one cent, although balance_usd says $1000
    base, _ = await serve(api)
    path = tmp_path / "m.yaml"
    path.write_text(f"model: {T2I}\njobs: [a, b]\n", encoding="utf-8")
    code, _, err = await cli(
        "run", path, "--out", tmp_path / "run", "--account-base", base, base=base
    )
    assert code == 3 and "$0.01" in err and api.posts == []


async def test_an_unknown_model_at_submit_is_named_with_the_nearest_ids(serve, session):
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error_code": 400001, "message": "model not found"}, status=400)

    base, _ = await serve(refuse)
    client = RunComfyClient(session, base, TOKEN)
    with pytest.raises(ApiError) as info:
        await client.submit(SEEDREAM[:-1], {"prompt": "x"})
    message = info.value.message
    assert info.value.error_code == 400001 and f"model {SEEDREAM[:-1]}: unknown model" in message
    assert f"did you mean '{SEEDREAM}'" in message and "model not found" in message


# --- simulate --catalog FILE, and --schema files in the live shape -----------------------------


def test_simulator_serves_a_given_catalogue(make_sim, tmp_path):
    listing = tmp_path / "catalog.json"
    listing.write_text(json.dumps({"models": LIVE, "total": len(LIVE)}), encoding="utf-8")
    sim = make_sim("--catalog", str(listing), "--price", f"{I2V}=0.2")
    env = sim_env(sim)
    res = run_cli("models", "--json", env=env)
    listed = {m["model_id"]: m for m in json.loads(res.stdout)["models"]}
    assert set(listed) == {T2I, I2V, BOTH} and listed[I2V]["base_price_usd"] == 0.2
    (tmp_path / "still.png").write_bytes(image("PNG", (32, 32)))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"model: {I2V}\njobs:\n  - {{prompt: a, image_url: still.png, duration: 10}}\n"
        f"  - {{prompt: b, model: {BOTH}}}\n",
        encoding="utf-8",
    )
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert "estimated cost of 2 jobs: $2" in res.stderr and "unknown for 1" in res.stderr
    assert len(list((tmp_path / "run" / "videos").glob("*.mp4"))) == 1
    # the unpriced model's job reports no cost: the estimate stays unknown, never "$0.00"
    cost = json.loads(res.stdout)["cost"]
    assert cost["estimated_usd"] is None and "of unknown estimated" in res.stderr
    assert cost["spent_usd"] == pytest.approx(2.0)
    bodies = {j["body"]["prompt"]: j["body"] for j in sim.jobs()}
    assert "end_image_url" not in bodies["a"] and bodies["a"]["duration"] == 10
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {FLOW}\njobs: [a]\n", encoding="utf-8")
    res = run_cli("run", bad, "--out", tmp_path / "bad", env=env)
    assert res.returncode == 2 and f"{bad}:1: model {FLOW}: a workflow endpoint" in res.stderr
    assert sim.stats()["submitted"] == 2
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([{"display_name": "no id"}]), encoding="utf-8")
    res = run_cli("simulate", "--catalog", broken, "--port", "0")
    assert res.returncode == 2 and "entry 1 has no model_id" in res.stderr


def test_schema_file_with_float_fields(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps([LIVE[0]]), encoding="utf-8")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"model: {T2I}\njobs:\n  - {{prompt: a, guidance_scale: 2.5}}\n")
    res = run_cli("validate", manifest, "--schema", schema, "--offline")
    assert res.returncode == 0, res.stderr
    manifest.write_text(f"model: {T2I}\njobs:\n  - {{prompt: a, guidance_scale: high}}\n")
    res = run_cli("validate", manifest, "--schema", schema, "--offline")
    assert res.returncode == 2
    assert f"{manifest}:3: model {T2I}: guidance_scale: must be a number, not 'high'" in res.stderr
    single = tmp_path / "one.json"
    single.write_text(json.dumps(LIVE[1]["input_schema"]), encoding="utf-8")
    csv = tmp_path / "m.csv"
    csv.write_text('prompt,duration,multi_prompt\na,10,"[{""prompt"": ""x""}]"\n', encoding="utf-8")
    res = run_cli("validate", csv, "--schema", single, "--offline", "--model", "me/mine", "--json")
    assert res.returncode == 2 and f"{csv}:2: model me/mine: image_url: required" in res.stderr
    assert "multi_prompt" not in res.stderr and "duration" not in res.stderr


def test_offline_unknown_model_is_listed_by_validate(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"model: {SEEDREAM[:-1]}\njobs: [a]\n", encoding="utf-8")
    res = run_cli("validate", manifest, "--offline", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["unknown_models"] == [SEEDREAM[:-1]]
    assert f"did you mean '{SEEDREAM}'" in res.stderr
    text = run_cli("validate", manifest, "--offline").stdout
    assert f"in no catalogue (inputs not checked; the API may refuse): {SEEDREAM[:-1]}" in text
