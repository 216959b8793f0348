"""The RunComfy simulator over real sockets on 127.0.0.1, with a real aiohttp client."""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from PIL import Image

from batch_runner.errors import UsageError
from batch_runner.simulator import (
    SimConfig,
    add_arguments,
    config_from_args,
    start_simulator,
)
from batch_runner.simulator.files import byte_range
from batch_runner.simulator.store import JobStore

pytestmark = pytest.mark.timeout(30)

MODEL = "bytedance/seedream-5/lite/text-to-image"
AUTH = {"Authorization": "Bearer sim-token"}
SMALL = 0.02  # image_scale that keeps files tiny


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim():
    async with start_simulator(SimConfig(image_scale=SMALL, seed=1)) as handle:
        yield handle


async def submit(
    session: aiohttp.ClientSession, base: str, body: dict[str, Any], headers=AUTH
) -> tuple[int, Any]:
    async with session.post(f"{base}/v1/models/{MODEL}", json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def get_json(session: aiohttp.ClientSession, url: str, headers=AUTH) -> tuple[int, Any]:
    async with session.get(url, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def eventually(check: Callable[[], Awaitable[Any]], limit: float = 5.0) -> Any:
    """Poll `check` until it returns something truthy; fail after `limit` seconds."""
    async with asyncio.timeout(limit):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.02)


async def finished_result(session, base: str, request_id: str) -> dict[str, Any]:
    url = f"{base}/v1/requests/{quote(request_id, safe='')}/result"

    async def check():
        status, body = await get_json(session, url)
        return body if status == 200 and "finished_at" in body else None

    return await eventually(check)


async def fetch(session, url: str, **kw) -> tuple[int, bytes, Any]:
    async with session.get(url, **kw) as r:
        return r.status, await r.read(), r.headers


# --- API basics -----------------------------------------------------------------------------


async def test_auth_errors(sim, session):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sim-token"}):
        status, body = await submit(session, sim.base_url, {"prompt": "x"}, headers=headers)
        assert status == 401 and body["error_code"] == 400004 and body["error_message"]
        status, body = await get_json(session, f"{sim.base_url}/v1/requests/a/status", headers)
        assert status == 401 and body["error_code"] == 400004
    assert sim.stats()["submitted"] == 0


async def test_unknown_model_and_unknown_id(sim, session):
    async with session.post(
        f"{sim.base_url}/v1/models/acme/other/model", json={"prompt": "x"}, headers=AUTH
    ) as r:
        assert r.status == 400 and (await r.json())["error_code"] == 400001
    for kind in ("status", "result"):
        status, body = await get_json(session, f"{sim.base_url}/v1/requests/nope/{kind}")
        assert status == 404 and body["error_code"] == 404001
    async with session.post(f"{sim.base_url}/v1/requests/nope/cancel", headers=AUTH) as r:
        assert r.status == 404 and (await r.json())["error_code"] == 404001


async def test_invalid_inputs_give_422_with_detail(sim, session):
    status, body = await submit(session, sim.base_url, {"resolution": "9K", "max_images": 99})
    assert status == 422 and body["error_code"] == 422001 and body["message"]
    locs = {tuple(d["loc"]): d for d in body["detail"]}
    assert locs[("body", "prompt")]["type"] == "missing"
    assert locs[("body", "resolution")]["type"] == "enum"
    assert ("body", "max_images") in locs
    async with session.post(
        f"{sim.base_url}/v1/models/{MODEL}", data=b"{not json", headers=AUTH
    ) as r:
        assert r.status == 422 and (await r.json())["detail"][0]["type"] == "json_invalid"
    status, body = await submit(session, sim.base_url, ["a list"])  # type: ignore[arg-type]
    assert status == 422
    assert sim.stats()["submitted"] == 0


async def test_submit_answer_and_urls_on_own_host(sim, session):
    status, body = await submit(session, sim.base_url, {"prompt": "a fox"})
    assert status == 200
    rid = body["request_id"]
    for key in ("status_url", "result_url", "cancel_url"):
        assert body[key].startswith(f"{sim.base_url}/v1/requests/{rid}/")
    status, st = await get_json(session, body["status_url"])
    assert status == 200 and st["request_id"] == rid and st["status"] == "completed"
    assert st["result_url"] == body["result_url"]
    result = await finished_result(session, sim.base_url, rid)
    assert set(result["output"]) == {"image"}
    assert result["created_at"].endswith("Z") and result["finished_at"].endswith("Z")


async def test_queue_positions_and_cancel(session):
    async with start_simulator(SimConfig(capacity=1, image_scale=SMALL)) as sim:
        ids = []
        for i in range(4):
            _, body = await submit(session, sim.base_url, {"prompt": f"job {i} [sim:latency=30]"})
            ids.append(body["request_id"])
        base = sim.base_url

        async def status_of(rid):
            return (await get_json(session, f"{base}/v1/requests/{rid}/status"))[1]

        first = await status_of(ids[0])
        assert first["status"] == "in_progress" and "queue_position" not in first
        assert [(await status_of(r))["queue_position"] for r in ids[1:]] == [1, 2, 3]
        _, res = await get_json(session, f"{base}/v1/requests/{ids[2]}/result")
        assert res == {"request_id": ids[2], "status": "in_queue", "queue_position": 2}

        async with session.post(f"{base}/v1/requests/{ids[1]}/cancel", headers=AUTH) as r:
            assert r.status == 200
            assert await r.json() == {
                "request_id": ids[1],
                "status": "cancelled",
                "outcome": "cancelled",
            }
        assert [(await status_of(r))["queue_position"] for r in ids[2:]] == [1, 2]
        async with session.post(f"{base}/v1/requests/{ids[0]}/cancel", headers=AUTH) as r:
            assert (await r.json())["outcome"] == "not_cancellable"
        assert (await status_of(ids[0]))["status"] == "in_progress"
        stats = sim.stats()
        assert stats["in_flight"] == 3 and stats["max_concurrent"] == 4
        assert stats["cancelled"] == 1


async def test_latency_then_completion(session):
    async with start_simulator(SimConfig(latency=(0.2, 0.3), image_scale=SMALL)) as sim:
        _, body = await submit(session, sim.base_url, {"prompt": "slow"})
        _, res = await get_json(session, body["result_url"])
        assert res["status"] == "in_progress" and "output" not in res
        result = await finished_result(session, sim.base_url, body["request_id"])
        assert result["status"] == "completed"
        job = sim.jobs()[0]
        assert 0.2 <= job["finished_at"] - job["started_at"] < 5


async def test_capacity_raised_live_starts_queued_jobs(session):
    async with start_simulator(SimConfig(capacity=1, image_scale=SMALL)) as sim:
        _, a = await submit(session, sim.base_url, {"prompt": "a [sim:latency=30]"})
        _, b = await submit(session, sim.base_url, {"prompt": "b"})
        assert (await get_json(session, b["status_url"]))[1]["status"] == "in_queue"
        async with session.post(f"{sim.base_url}/_sim/config", json={"capacity": 0}) as r:
            assert r.status == 200 and (await r.json())["capacity"] == 0
        assert (await get_json(session, b["status_url"]))[1]["status"] == "completed"


def test_queue_positions_match_a_naive_count_under_churn():
    async def scenario():
        store = JobStore(SimConfig(capacity=2, latency=(60.0, 60.0), seed=3))
        jobs = [store.create(MODEL, {"prompt": f"p{i}"}) for i in range(300)]
        for job in jobs[5:300:7]:
            store.cancel(job)
        queued = [j for j in jobs if j.status == "in_queue"]
        assert [store.queue_position(j) for j in queued] == list(range(1, len(queued) + 1))
        assert store.stats.in_flight == len(queued) + 2
        store.reset()

    asyncio.run(scenario())


# --- files ----------------------------------------------------------------------------------


async def _image_of(session, sim, body):
    _, sub = await submit(session, sim.base_url, body)
    result = await finished_result(session, sim.base_url, sub["request_id"])
    return result


@pytest.mark.parametrize(
    ("resolution", "fmt", "size"),
    [
        ("2048x2048 (1:1)", "png", (41, 41)),
        ("2848x1600 (16:9)", "jpeg", (57, 32)),
        ("2K", "png", (41, 41)),
        ("3K", "jpeg", (61, 61)),
        (None, "png", (46, 35)),
    ],
)
async def test_real_images_of_the_right_size(sim, session, resolution, fmt, size):
    body = {"prompt": "a lighthouse", "output_format": fmt}
    if resolution:
        body["resolution"] = resolution
    result = await _image_of(session, sim, body)
    status, data, headers = await fetch(session, result["output"]["image"])
    assert status == 200 and int(headers["Content-Length"]) == len(data)
    assert headers["Content-Type"] == f"image/{fmt}"
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt.upper() and image.size == size


async def test_full_scale_and_padding(session):
    async with start_simulator(SimConfig(pad_bytes=300_000)) as sim:
        for fmt in ("png", "jpeg"):
            result = await _image_of(session, sim, {"prompt": "big", "output_format": fmt})
            _, data, _ = await fetch(session, result["output"]["image"])
            assert len(data) >= 300_000
            image = Image.open(io.BytesIO(data))
            image.load()
            assert image.size == (2304, 1728)


async def test_sequential_images_are_distinct_files(sim, session):
    body = {"prompt": "a set", "sequential_image_generation": "auto", "max_images": 4}
    result = await _image_of(session, sim, body)
    urls = result["output"]["images"]
    assert 1 <= len(urls) <= 4 and set(result["output"]) == {"images"}
    blobs = [(await fetch(session, u))[1] for u in urls]
    assert len(set(blobs)) == len(blobs)
    for blob in blobs:
        assert Image.open(io.BytesIO(blob)).format == "PNG"


@pytest.mark.parametrize("style", ["video", "videos", "images", "image"])
async def test_output_styles(session, style):
    async with start_simulator(SimConfig(output_style=style, image_scale=SMALL)) as sim:
        result = await _image_of(session, sim, {"prompt": "moving"})
        value = result["output"][style]
        url = value[0] if style.endswith("s") else value
        assert isinstance(value, list) == style.endswith("s")
        status, data, headers = await fetch(session, url)
        assert status == 200
        if style.startswith("video"):
            assert data[4:8] == b"ftyp" and headers["Content-Type"] == "video/mp4"
        else:
            assert data.startswith(b"\x89PNG")


async def test_range_head_and_auth_counting(sim, session):
    result = await _image_of(session, sim, {"prompt": "ranges"})
    url = result["output"]["image"]
    _, whole, _ = await fetch(session, url, headers=AUTH)
    status, part, headers = await fetch(session, url, headers={"Range": "bytes=10-"})
    assert status == 206 and part == whole[10:]
    assert headers["Content-Range"] == f"bytes 10-{len(whole) - 1}/{len(whole)}"
    status, part, _ = await fetch(session, url, headers={"Range": "bytes=-5"})
    assert status == 206 and part == whole[-5:]
    status, _, headers = await fetch(session, url, headers={"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    async with session.head(url) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(whole)
    assert sim.stats()["file_requests_with_auth"] == 1
    assert sim.stats()["requests"]["file"] == 5


def test_byte_range_parsing():
    assert byte_range(None, 10) is None
    assert byte_range("bytes=2-", 10) == (2, 10)
    assert byte_range("bytes=2-4", 10) == (2, 5)
    assert byte_range("bytes=-3", 10) == (7, 10)
    assert byte_range("bytes=0-1,4-5", 10) is None
    assert byte_range("bytes=10-", 10) is False


async def test_unknown_files_are_404(sim, session):
    for path in ("/files/0/1.png", "/files/abc/1.png", "/files/0/x.gif"):
        status, _, _ = await fetch(session, sim.base_url + path)
        assert status == 404


# --- stats, directives, control ---------------------------------------------------------------


async def test_stats_counters(sim, session):
    for prompt in ("same", "same", "other"):
        await submit(session, sim.base_url, {"prompt": prompt})
    _, sub = await submit(session, sim.base_url, {"prompt": "last"})
    await get_json(session, sub["status_url"])
    await get_json(session, sub["result_url"])
    async with session.get(f"{sim.base_url}/_sim/stats") as r:
        stats = await r.json()
    assert stats == sim.stats()
    assert stats["submitted"] == 4 and stats["unique_bodies"] == 3
    assert stats["requests"] == {"submit": 4, "status": 1, "result": 1, "cancel": 0, "file": 0}
    assert stats["in_flight"] == 0 and stats["max_concurrent"] == 1 and stats["faults"] == {}
    async with session.get(f"{sim.base_url}/_sim/jobs") as r:
        jobs = await r.json()
    assert [j["body"]["prompt"] for j in jobs] == ["same", "same", "other", "last"]
    assert all(j["created_at"] <= j["started_at"] <= j["finished_at"] for j in jobs)
    async with session.post(f"{sim.base_url}/_sim/reset") as r:
        assert r.status == 200
    assert sim.stats()["submitted"] == 0 and sim.jobs() == []


async def test_directives(sim, session):
    _, sub = await submit(session, sim.base_url, {"prompt": "doomed [sim:fail]"})
    result = await finished_result(session, sim.base_url, sub["request_id"])
    assert result["status"] == "failed" and result["error"] and "output" not in result
    status, body = await submit(session, sim.base_url, {"prompt": "x [sim:error200]"})
    assert status == 200 and body["error_code"] == 500001 and "request_id" not in body
    _, sub = await submit(session, sim.base_url, {"prompt": "x [sim:latency=30]"})
    assert (await get_json(session, sub["status_url"]))[1]["status"] == "in_progress"
    stats = sim.stats()
    assert stats["submitted"] == 2 and stats["faults"] == {"fail": 1, "error_200": 1}


async def test_sim_config_live_and_bad_values(sim, session):
    async with session.post(f"{sim.base_url}/_sim/config", json={"error_rate": 1.0}) as r:
        assert r.status == 200
    status, _ = await submit(session, sim.base_url, {"prompt": "x"})
    assert status in (200, 500, 502, 503)
    assert sim.stats()["submitted"] == 0
    for bad in ({"error_rate": 2}, {"nope": 1}, {"latency": "x"}, [1], {"hostile": "evil"}):
        async with session.post(f"{sim.base_url}/_sim/config", json=bad) as r:
            assert r.status == 400 and (await r.json())["error"]
    async with session.get(f"{sim.base_url}/_sim/config") as r:
        assert (await r.json())["error_rate"] == 1.0
    async with session.post(
        f"{sim.base_url}/_sim/config", json={"error_rate": 0, "latency": "0.5:1"}
    ) as r:
        assert (await r.json())["latency"] == [0.5, 1.0]
    sim.config.latency = (0.0, 0.0)  # the handle's config is the live one
    status, _ = await submit(session, sim.base_url, {"prompt": "x"})
    assert status == 200 and sim.jobs()[0]["status"] == "completed"


# --- faults -----------------------------------------------------------------------------------


async def test_error_rate_gives_error_bodies_and_no_jobs(session):
    async with start_simulator(SimConfig(error_rate=1.0, seed=7)) as sim:
        seen = set()
        for _ in range(40):
            status, body = await submit(session, sim.base_url, {"prompt": "x"})
            assert body["error_code"] == 500001 and body["error_message"]
            seen.add(status)
        assert seen == {200, 500, 502, 503}
        stats = sim.stats()
        assert stats["submitted"] == 0 and sum(stats["faults"].values()) == 40
        assert set(stats["faults"]) == {"error_200", "error_500", "error_502", "error_503"}


async def test_drop_closes_the_connection_without_answer(session):
    async with start_simulator(SimConfig(drop_rate=1.0, seed=1)) as sim:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await submit(session, sim.base_url, {"prompt": "x"})
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as fresh:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await get_json(fresh, f"{sim.base_url}/v1/requests/x/result")
        stats = sim.stats()
        # aiohttp silently retries an idempotent request once after a disconnect: 1 + 2 drops
        assert stats["submitted"] == 0 and stats["faults"]["drop"] == 3


async def test_lost_submit_creates_the_job_then_drops(session):
    async with start_simulator(SimConfig(lost_submit_rate=1.0, seed=1)) as sim:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await submit(session, sim.base_url, {"prompt": "paid for"})
        stats = sim.stats()
        assert stats["submitted"] == 1 and stats["unique_bodies"] == 1
        assert stats["faults"]["lost_submit"] == 1


async def test_hold_submits_keeps_the_answer_until_released(sim, session):
    """The testing switch `hold_submits` (a model id or a prompt fragment): the job is created,
    its answer waits until the entry is removed; other submits pass."""

    async def config(body):
        async with session.post(f"{sim.base_url}/_sim/config", json=body) as r:
            return r.status

    assert await config({"hold_submits": ["wait here"]}) == 200
    held = [asyncio.create_task(submit(session, sim.base_url, {"prompt": f"{i} wait here"}))
            for i in range(2)]  # fmt: skip

    async def both_held():
        return sim.stats()["held_submits"] == 2

    await eventually(both_held)
    status, _ = await submit(session, sim.base_url, {"prompt": "passes"})
    assert status == 200 and not any(t.done() for t in held)
    assert await config({"hold_submits": [MODEL]}) == 200  # a model id holds too: still held
    await get_json(session, f"{sim.base_url}/_sim/config")  # a round trip: they looked again
    assert not any(t.done() for t in held)
    assert sim.stats()["submitted"] == 3 and sim.stats()["held_submits"] == 2
    assert await config({"hold_submits": []}) == 200
    assert [(await t)[0] for t in held] == [200, 200]
    stats = sim.stats()
    assert (stats["held_submits"], stats["held_submits_total"], stats["submitted"]) == (0, 2, 3)
    for bad in ({"hold_submits": "x"}, {"hold_submits": [""]}, {"hold_submits": [1]}):
        assert await config(bad) == 400


async def test_rate_limit_429_with_retry_after(session):
    async with start_simulator(SimConfig(rate_limit=2.0, seed=5)) as sim:
        answers = []
        for _ in range(40):
            async with session.get(f"{sim.base_url}/v1/requests/x/status", headers=AUTH) as r:
                answers.append((r.status, r.headers.get("Retry-After"), await r.json()))
        limited = [a for a in answers if a[0] == 429]
        assert 30 <= len(limited) <= 38
        assert all(body["error_code"] == 429001 for _, _, body in limited)
        assert {h for _, h, _ in limited} == {None, "1"}
        assert any(body.get("retry_after") == 1 for _, _, body in limited)
        assert sim.stats()["faults"]["rate_limited"] == len(limited)


async def test_rate_limit_spares_files(session):
    async with start_simulator(SimConfig(image_scale=SMALL)) as sim:
        result = await _image_of(session, sim, {"prompt": "f"})
        sim.config.rate_limit = 1.0
        for _ in range(5):
            assert (await fetch(session, result["output"]["image"]))[0] == 200


async def test_truncated_download_is_short(session):
    async with start_simulator(SimConfig(image_scale=0.1, seed=2)) as sim:
        result = await _image_of(session, sim, {"prompt": "cut"})
        sim.config.truncate_rate = 1.0
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as fresh,
            fresh.get(result["output"]["image"]) as r,
        ):
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        assert sim.stats()["faults"]["truncate"] == 1


async def test_url_ttl_expires_and_result_gives_fresh_urls(session):
    async with start_simulator(SimConfig(url_ttl=0.3, image_scale=SMALL, seed=4)) as sim:
        _, sub = await submit(session, sim.base_url, {"prompt": "ttl"})
        result = await finished_result(session, sim.base_url, sub["request_id"])
        old = result["output"]["image"]
        assert (await fetch(session, old))[0] == 200

        async def expired():
            status, body, headers = await fetch(session, old)
            return (status, body, headers) if status != 200 else None

        status, body, headers = await eventually(expired)
        assert status in (403, 404) and b"<Error>" in body
        assert headers["Content-Type"].startswith("application/xml")
        fresh = (await get_json(session, sub["result_url"]))[1]["output"]["image"]
        assert fresh != old and (await fetch(session, fresh))[0] == 200
        assert sim.stats()["faults"]["url_expired"] >= 1


async def test_request_ttl_forgets_ids(session):
    async with start_simulator(SimConfig(request_ttl=0.2, image_scale=SMALL)) as sim:
        _, sub = await submit(session, sim.base_url, {"prompt": "forget me"})

        async def gone():
            status, body = await get_json(session, sub["result_url"])
            return body if status == 404 else None

        body = await eventually(gone)
        assert body["error_code"] == 404001
        assert sim.stats()["faults"]["request_expired"] >= 1


async def test_same_seed_same_behaviour(session):
    async def trace():
        config = SimConfig(error_rate=0.3, drop_rate=0.1, fail_rate=0.3, seed=42)
        out = []
        async with start_simulator(config) as sim:
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as fresh:
                for i in range(30):
                    try:
                        status, body = await submit(fresh, sim.base_url, {"prompt": f"p{i}"})
                        out.append((status, body.get("request_id"), body.get("error_code")))
                    except aiohttp.ServerDisconnectedError:
                        out.append(("drop",))
            out.append(tuple(j["status"] for j in sim.jobs()))
        return out

    assert await trace() == await trace()


# --- hostile cases ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "check"),
    [
        ("wrong_types", lambda b: isinstance(b["output"]["images"], str)),
        ("missing_fields", lambda b: "status" not in b),
        ("unknown_status", lambda b: b["status"] == "exploded" and "output" not in b),
        ("many_urls", lambda b: len(set(b["output"]["images"])) == 10_000),
    ],
)
async def test_hostile_result_answers(session, case, check):
    async with start_simulator(SimConfig(image_scale=SMALL)) as sim:
        _, sub = await submit(session, sim.base_url, {"prompt": "h"})
        sim.config.hostile = case
        status, body = await get_json(session, sub["result_url"])
        assert status == 200 and check(body)


async def test_hostile_submit_answers(session):
    async with start_simulator(SimConfig(hostile="wrong_types")) as sim:
        _, body = await submit(session, sim.base_url, {"prompt": "h"})
        assert isinstance(body["request_id"], int)
        sim.config.hostile = "missing_fields@submit"
        _, body = await submit(session, sim.base_url, {"prompt": "h"})
        assert "request_id" not in body
        sim.config.hostile = "non_json"
        async with session.post(
            f"{sim.base_url}/v1/models/{MODEL}", json={"prompt": "h"}, headers=AUTH
        ) as r:
            assert r.status == 200 and r.content_type == "text/html"
        assert sim.stats()["submitted"] == 3


async def test_hostile_oversized_result(session):
    async with start_simulator(SimConfig(image_scale=SMALL, hostile="oversized")) as sim:
        _, sub = await submit(session, sim.base_url, {"prompt": "h"})
        async with session.get(sub["result_url"], headers=AUTH) as r:
            assert int(r.headers["Content-Length"]) >= 50 * 1024 * 1024
            assert (await r.content.read(10)).startswith(b"{")


async def test_hostile_weird_request_id_routes_when_quoted(session):
    async with start_simulator(SimConfig(image_scale=SMALL, hostile="weird_request_id")) as sim:
        _, sub = await submit(session, sim.base_url, {"prompt": "h"})
        rid = sub["request_id"]
        assert rid.startswith("../../etc/passwd?x=%2F")
        status, body = await get_json(session, sub["status_url"])
        assert status == 200 and body["request_id"] == rid
        url = f"{sim.base_url}/v1/requests/{quote(rid, safe='')}/result"
        status, body = await get_json(session, url)
        assert status == 200 and body["status"] == "completed"


async def test_hostile_file_cases(session):
    async with start_simulator(SimConfig(image_scale=SMALL)) as sim:
        assert sim.offhost_url is not None
        result = await _image_of(session, sim, {"prompt": "files"})
        url = result["output"]["image"]
        sim.config.hostile = "bad_file"
        status, data, headers = await fetch(session, url)
        assert status == 200 and data.startswith(b"<!doctype html>")
        sim.config.hostile = "echo_headers"
        await fetch(session, url, headers={"X-Probe": "1", **AUTH})
        seen = sim.stats()["file_request_headers"]
        assert seen[-1]["X-Probe"] == "1" and seen[-1]["Authorization"].startswith("Bearer")
        sim.config.hostile = "redirect_offhost"
        async with session.get(url, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"].startswith(sim.offhost_url)
        status, data, _ = await fetch(session, url)  # aiohttp follows to 127.0.0.2
        assert status == 200 and data.startswith(b"\x89PNG")
        sim.config.hostile = "offhost_urls"
        _, res = await get_json(
            session, f"{sim.base_url}/v1/requests/{result['request_id']}/result"
        )
        assert res["output"]["image"].startswith(sim.offhost_url + "/files/")
        assert (await fetch(session, res["output"]["image"]))[0] == 200


# --- settings and the command line -----------------------------------------------------------


def _parse(argv: list[str]) -> SimConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_config_from_args():
    config = _parse(["--latency", "1:3", "--capacity", "4", "--drop-rate", "0.5", "--seed", "9"])
    assert config.latency == (1.0, 3.0) and config.capacity == 4 and config.drop_rate == 0.5
    assert _parse(["--latency", "2"]).latency == (2.0, 2.0)
    assert _parse(["--hostile", "wrong_types@result,status"]).hostile == "wrong_types@result,status"
    for bad in (
        ["--fail-rate", "1.5"],
        ["--error-rate", "-0.1"],
        ["--latency", "3:1"],
        ["--latency", "a:b"],
        ["--latency", "1:2:3"],
        ["--rate-limit", "0"],
        ["--image-scale", "0"],
        ["--hostile", "nasty"],
        ["--hostile", "non_json@everything"],
    ):
        with pytest.raises(UsageError):
            _parse(bad)


def test_module_entry_point_prints_listening_line():
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_runner.simulator", "--port", "0", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert line.startswith("simulator listening on http://127.0.0.1:")
        assert int(line.rsplit(":", 1)[1]) > 0
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_module_entry_point_refuses_bad_values():
    proc = subprocess.run(
        [sys.executable, "-m", "batch_runner.simulator", "--fail-rate", "7"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2 and "fail_rate" in proc.stderr
