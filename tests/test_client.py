"""RunComfyClient against tiny aiohttp servers on 127.0.0.1: answers, error mapping, transport."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from localserver import Handler, Server  # noqa: F401

from batch_runner.api.client import CancelOutcome, Poll, RunComfyClient, Submitted
from batch_runner.api.deadlines import Deadlines
from batch_runner.api.limits import RateLimiter
from batch_runner.errors import AccountError, ApiError, TransportError

TOKEN = "tok-SECRET-1234"
MODEL = "bytedance/seedream-5/lite/text-to-image"


def answer(body: object, status: int = 200, headers: dict | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return handler


def raw_answer(text: bytes, status: int = 200, content_type: str = "text/html") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=text, status=status, content_type=content_type)

    return handler


async def client_for(serve, session, handler: Handler, **kw) -> tuple[RunComfyClient, Server]:
    base, server = await serve(handler)
    return RunComfyClient(session, base, TOKEN, **kw), server


# ---- success ------------------------------------------------------------------------------


async def test_submit_sends_inputs_with_bearer_token(serve, session):
    client, server = await client_for(serve, session, answer({"request_id": "r-1"}))
    assert await client.submit(MODEL, {"prompt": "a fox"}) == Submitted("r-1")
    seen = server.seen[0]
    assert seen["method"] == "POST"
    assert seen["raw_path"] == f"/v1/models/{MODEL}"
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen["body"]) == {"prompt": "a fox"}


async def test_no_token_sends_no_authorization(serve, session):
    base, server = await serve(answer({"request_id": "r-1"}))
    await RunComfyClient(session, base, None).submit(MODEL, {"prompt": "x"})
    assert "Authorization" not in server.seen[0]["headers"]


async def test_result_collects_all_four_output_fields_in_order(serve, session):
    output = {
        "videos": ["http://h/v2.mp4"],
        "image": "http://h/i.png",
        "video": "http://h/v.mp4",
        "images": ["http://h/a.png", "https://h/b.jpg"],
    }
    body = {"request_id": "r", "status": "succeeded", "output": output}
    client, server = await client_for(serve, session, answer(body))
    poll = await client.result("r")
    assert poll == Poll(
        "r",
        "completed",
        None,
        [
            "http://h/i.png",
            "http://h/a.png",
            "https://h/b.jpg",
            "http://h/v.mp4",
            "http://h/v2.mp4",
        ],
        None,
    )
    assert server.seen[0]["raw_path"] == "/v1/requests/r/result?include_cost=true"


async def test_result_reports_server_measured_duration(serve, session):
    body = {
        "request_id": "r",
        "status": "completed",
        "output": {"image": "http://h/i.png"},
        "created_at": "2025-01-01T10:00:00.250Z",
        "finished_at": "2025-01-01T10:00:42.750Z",
    }
    client, _ = await client_for(serve, session, answer(body))
    assert (await client.result("r")).duration == 42.5
    body.update(created_at="yesterday", finished_at=17)
    client, _ = await client_for(serve, session, answer(body))
    assert (await client.result("r")).duration is None


async def test_status_reports_queue_position_and_normalises(serve, session):
    client, server = await client_for(
        serve, session, answer({"request_id": "r", "status": "in_queue", "queue_position": 3})
    )
    assert await client.status("r") == Poll("r", "in_queue", 3, [], None)
    assert server.seen[0]["raw_path"] == "/v1/requests/r/status"


async def test_status_completed_needs_no_outputs(serve, session):
    client, _ = await client_for(serve, session, answer({"request_id": "r", "status": "completed"}))
    assert (await client.status("r")).status == "completed"


async def test_canceled_spelling_and_failed_error(serve, session):
    client, _ = await client_for(serve, session, answer({"request_id": "r", "status": "canceled"}))
    assert (await client.result("r")).status == "cancelled"
    body = {"request_id": "r", "status": "failed", "error": "NSFW content"}
    client, _ = await client_for(serve, session, answer(body))
    assert await client.result("r") == Poll("r", "failed", None, [], "NSFW content")


async def test_in_progress_ignores_partial_output(serve, session):
    body = {"request_id": "r", "status": "in_progress", "output": {"image": 5}}
    client, _ = await client_for(serve, session, answer(body))
    assert (await client.result("r")).outputs == []


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ({"request_id": "r", "status": "cancelled", "outcome": "cancelled"}, "cancelled"),
        (
            {"request_id": "r", "status": "in_progress", "outcome": "not_cancellable"},
            "not_cancellable",
        ),
        ({"request_id": "r", "status": "canceled"}, "cancelled"),
    ],
)
async def test_cancel_outcomes(serve, session, body, outcome):
    client, server = await client_for(serve, session, answer(body))
    result = await client.cancel("r")
    assert isinstance(result, CancelOutcome) and result.outcome == outcome
    assert server.seen[0]["method"] == "POST"
    assert server.seen[0]["raw_path"] == "/v1/requests/r/cancel"


# ---- error mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "needle"),
    [
        (401, {"error_code": 400004, "error_message": "bad token"}, "check RUNCOMFY_API_TOKEN"),
        (200, {"error_code": 400004, "message": "inactive account"}, "API token rejected (400004)"),
        (402, {"message": "pay up"}, "insufficient credits"),
        (
            400,
            {"error_code": 400002, "error_message": "no credits"},
            "insufficient credits (400002)",
        ),
    ],
)
async def test_account_errors(serve, session, status, body, needle):
    client, _ = await client_for(serve, session, answer(body, status))
    with pytest.raises(AccountError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        await client.submit(MODEL, {"prompt": "x"})


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, {"error_code": 400001, "error_message": "unknown model"}, "4xx", 400001),
        (403, {"error_code": 403001, "error_message": "not yours"}, "4xx", 403001),
        (404, {"error_code": 404001, "error_message": "unknown request"}, "expired", 404001),
        (408, {"message": "timeout"}, "4xx", None),
        (500, {"error_code": 500001, "error_message": "oops"}, "5xx", 500001),
        (503, {"error_code": 500001, "error_message": "busy"}, "5xx", 500001),
        (200, {"error_code": 500001, "error_message": "oops"}, "5xx", 500001),
        (200, {"error_code": 404001, "error_message": "gone"}, "expired", 404001),
        (200, {"error_code": 422001, "error_message": "bad"}, "4xx", 422001),
        (200, {"error_code": 123, "error_message": "odd"}, "error200", 123),
    ],
)
async def test_api_error_mapping(serve, session, status, body, kind, code):
    client, _ = await client_for(serve, session, answer(body, status))
    with pytest.raises(ApiError) as info:
        await client.result("r-9")
    err = info.value
    assert (err.kind, err.error_code, err.status, err.request_id) == (kind, code, status, "r-9")
    assert body["error_message" if "error_message" in body else "message"] in err.message


@pytest.mark.parametrize("status", [502, 504, 500])
async def test_bare_5xx_pages(serve, session, status):
    client, _ = await client_for(serve, session, raw_answer(b"<html>Bad Gateway</html>", status))
    with pytest.raises(ApiError) as info:
        await client.submit(MODEL, {"prompt": "x"})
    assert (info.value.kind, info.value.status, info.value.error_code) == ("5xx", status, None)
    assert "Bad Gateway" in info.value.message


async def test_422_keeps_detail_compact(serve, session):
    detail = [{"loc": ["body", "resolution"], "msg": "not one of the allowed values"}]
    body = {"error_code": 422001, "error_message": "invalid inputs", "detail": detail}
    client, _ = await client_for(serve, session, answer(body, 422))
    with pytest.raises(ApiError) as info:
        await client.submit(MODEL, {"prompt": "x", "resolution": "9K"})
    assert info.value.kind == "4xx" and info.value.error_code == 422001
    assert "body.resolution: not one of the allowed values" in info.value.message


async def test_429_retry_after_header_seconds(serve, session):
    client, _ = await client_for(
        serve, session, answer({"message": "slow down"}, 429, {"Retry-After": "7"})
    )
    with pytest.raises(ApiError) as info:
        await client.result("r")
    assert (info.value.kind, info.value.retry_after) == ("429", 7.0)


async def test_429_retry_after_http_date(serve, session):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, _ = await client_for(serve, session, answer({}, 429, {"Retry-After": when}))
    with pytest.raises(ApiError) as info:
        await client.result("r")
    assert 20 < info.value.retry_after <= 31


async def test_429_retry_after_body_field_and_limiter_slows(serve, session):
    limiter = RateLimiter(None)
    client, _ = await client_for(
        serve, session, answer({"retry_after": 3, "message": "x"}, 429), limiter=limiter
    )
    with pytest.raises(ApiError) as info:
        await client.result("r")
    assert (info.value.kind, info.value.retry_after) == ("429", 3.0)
    assert limiter.current_rate is not None  # unlimited no more after a 429


async def test_redirect_is_not_followed_and_token_stays_home(serve, session):
    other, elsewhere = await serve(answer({"request_id": "r", "status": "completed"}), "127.0.0.2")
    client, _ = await client_for(serve, session, _redirect_to(other + "/steal"))
    with pytest.raises(ApiError) as info:
        await client.result("r")
    assert info.value.kind == "bad_answer" and info.value.status == 302
    assert elsewhere.seen == []


def _redirect_to(url: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(url)

    return handler


async def test_token_never_in_error_messages(serve, session):
    body = {"error_code": 400004, "error_message": f"token {TOKEN} is not valid"}
    client, _ = await client_for(serve, session, answer(body, 401))
    with pytest.raises(AccountError) as info:
        await client.result("r")
    assert TOKEN not in str(info.value) and "***" in str(info.value)
    client, _ = await client_for(serve, session, answer({"message": f"echo {TOKEN}"}, 500))
    with pytest.raises(ApiError) as api_info:
        await client.result("r")
    assert TOKEN not in str(api_info.value) and TOKEN not in api_info.value.message


# ---- bad answers --------------------------------------------------------------------------


async def test_non_json_200_is_transport_bad_answer(serve, session):
    client, _ = await client_for(serve, session, raw_answer(b"\xff\xfe not json"))
    with pytest.raises(TransportError) as info:
        await client.result("r")
    assert info.value.kind == "bad_answer"


async def test_oversized_body_is_refused(serve, session):
    big = {"request_id": "r", "status": "in_queue", "pad": "x" * 3_000_000}
    client, _ = await client_for(serve, session, answer(big))
    with pytest.raises(TransportError) as info:
        await client.result("r")
    assert info.value.kind == "bad_answer" and "too large" in info.value.message


async def test_oversized_chunked_body_is_refused(serve, session):
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(40):
            await resp.write(b" " * 65536)
        return resp

    client, _ = await client_for(serve, session, chunked, max_body_bytes=100_000)
    with pytest.raises(TransportError, match="too large"):
        await client.status("r")


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": 5, "status": "completed"},
        {"request_id": "r"},
        {"request_id": "r", "status": 3},
        {"request_id": "r", "status": "completed"},
        {"request_id": "r", "status": "completed", "output": {"image": "javascript:alert(1)"}},
        {"request_id": "r", "status": "completed", "output": {"images": [1, 2]}},
        {"request_id": "r", "status": "completed", "output": 7},
        ["not", "an", "object"],
        "a string",
    ],
)
async def test_wrong_shapes_are_bad_answers(serve, session, body):
    client, _ = await client_for(serve, session, answer(body))
    with pytest.raises(ApiError) as info:
        await client.result("r")
    assert info.value.kind == "bad_answer"


@pytest.mark.parametrize(
    "body", [{}, {"request_id": 17}, {"request_id": ""}, {"request_id": "x" * 257}, []]
)
async def test_submit_without_usable_request_id(serve, session, body):
    client, _ = await client_for(serve, session, answer(body))
    with pytest.raises(ApiError) as info:
        await client.submit(MODEL, {"prompt": "x"})
    assert info.value.kind == "bad_answer"


async def test_unknown_status_is_its_own_kind(serve, session):
    client, _ = await client_for(serve, session, answer({"request_id": "r", "status": "exploded"}))
    with pytest.raises(ApiError) as info:
        await client.result("r")
    assert info.value.kind == "unknown_status" and "exploded" in info.value.message


async def test_ten_thousand_urls_is_bad_answer_but_max_is_fine(serve, session):
    urls = [f"http://h/{i}.png" for i in range(10_000)]
    client, _ = await client_for(
        serve,
        session,
        answer({"request_id": "r", "status": "completed", "output": {"images": urls}}),
    )
    with pytest.raises(ApiError, match="more than 1000"):
        await client.result("r")
    ok = {"request_id": "r", "status": "completed", "output": {"images": urls[:1000]}}
    client, _ = await client_for(serve, session, answer(ok))
    assert len((await client.result("r")).outputs) == 1000


@pytest.mark.parametrize("bad_id", ["", "x" * 257, None, 42])
async def test_invalid_request_id_is_refused_without_a_request(serve, session, bad_id):
    client, server = await client_for(serve, session, answer({}))
    with pytest.raises(ApiError) as info:
        await client.result(bad_id)
    assert info.value.kind == "bad_answer" and server.seen == []


@pytest.mark.parametrize(
    "request_id", ["a/b", "../../etc/passwd", "q?x=1#f", "100%2F", "sp ace", "ü/..", "%"]
)
async def test_weird_request_ids_are_quoted_on_the_wire(serve, session, request_id):
    body = {"request_id": request_id, "status": "in_progress"}
    client, server = await client_for(serve, session, answer(body))
    assert (await client.result(request_id)).request_id == request_id
    quoted = quote(request_id, safe="")
    assert server.seen[0]["raw_path"] == f"/v1/requests/{quoted}/result?include_cost=true"


# ---- transport ----------------------------------------------------------------------------


async def test_connection_refused_means_not_sent(session):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = RunComfyClient(session, f"http://127.0.0.1:{port}", TOKEN)
    with pytest.raises(TransportError) as info:
        await client.submit(MODEL, {"prompt": "x"})
    assert info.value.sent is False and info.value.kind == "dropped"
    assert TOKEN not in str(info.value)
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)  # kept, not shown


async def test_drop_after_reading_body_means_sent(serve, session):
    async def drop(request: web.Request) -> web.StreamResponse:
        await request.read()
        request.transport.close()
        await asyncio.sleep(0.2)
        return web.Response()

    client, server = await client_for(serve, session, drop)
    with pytest.raises(TransportError) as info:
        await client.submit(MODEL, {"prompt": "x"})
    assert info.value.sent is True and info.value.kind == "dropped"
    assert len(server.seen) == 1


async def test_read_timeout_means_sent(serve, session):
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({"request_id": "late"})

    client, _ = await client_for(serve, session, slow, timeout=0.3)
    with pytest.raises(TransportError) as info:
        await client.submit(MODEL, {"prompt": "x"})
    assert info.value.sent is True and info.value.kind == "timeout"


async def test_cut_short_body_is_transport_error(serve, session):
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Length": "1000", "Content-Type": "application/json"}
        )
        await resp.prepare(request)
        await resp.write(b'{"request_id": "r", ')
        request.transport.close()
        return resp

    client, _ = await client_for(serve, session, cut)
    with pytest.raises(TransportError) as info:
        await client.result("r")
    assert info.value.sent is True and info.value.request_id == "r"


async def test_one_timer_limits_many_calls_each_to_its_own_deadline(serve, session):
    """Calls share one Deadlines: the slow ones time out, the quick ones are untouched."""

    async def mixed(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["prompt"].startswith("slow"):
            await asyncio.sleep(3)
        return web.json_response({"request_id": body["prompt"]})

    deadlines = Deadlines()
    client, _ = await client_for(serve, session, mixed, timeout=0.4, deadlines=deadlines)
    prompts = [f"{'slow' if i % 3 == 0 else 'quick'}-{i}" for i in range(12)]
    started = asyncio.get_running_loop().time()
    got = await asyncio.gather(
        *(client.submit(MODEL, {"prompt": p}) for p in prompts), return_exceptions=True
    )
    assert asyncio.get_running_loop().time() - started < 2.5
    for prompt, outcome in zip(prompts, got, strict=True):
        if prompt.startswith("slow"):
            assert isinstance(outcome, TransportError) and outcome.kind == "timeout"
            assert outcome.sent is True
        else:
            assert outcome == Submitted(prompt)
    # the task is usable after its timeout: no cancellation is left pending on it
    assert await client.submit(MODEL, {"prompt": "quick-again"}) == Submitted("quick-again")


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout(serve, session):
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3)
        return web.json_response({"request_id": "late"})

    client, _ = await client_for(serve, session, slow, timeout=30)
    call = asyncio.ensure_future(client.submit(MODEL, {"prompt": "x"}))
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
