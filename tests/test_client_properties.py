"""Property tests: whatever the server answers, the client raises only ApiError or AccountError."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_runner.api.answers import error_from_answer, parse_cancel, parse_poll
from batch_runner.api.client import RunComfyClient
from batch_runner.api.http import retry_after_from
from batch_runner.errors import AccountError, ApiError

KEYS = [
    "request_id",
    "status",
    "output",
    "error_code",
    "error_message",
    "message",
    "detail",
    "queue_position",
    "outcome",
    "retry_after",
    "error",
    "image",
    "images",
    "video",
    "videos",
]
STATUS_WORDS = [
    "in_queue",
    "in_progress",
    "completed",
    "succeeded",
    "failed",
    "cancelled",
    "canceled",
    "COMPLETED",
    "weird",
    "",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        STATUS_WORDS + ["http://h/x.png", "https://h/y.jpg", "javascript:x", "http://"]
    )
    | st.sampled_from([400004, 400002, 404001, 422001, 500001, 403001, 429001, 0, "500001"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)
answers = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8) | json_values
STATUS_CODES = [
    200,
    201,
    202,
    301,
    302,
    400,
    401,
    402,
    403,
    404,
    408,
    410,
    422,
    429,
    500,
    502,
    503,
    504,
]
retry_after_headers = st.none() | st.sampled_from(
    ["5", "-1", "1e400", "nan", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 99 Foo 9999", ""]
)
ALLOWED = (ApiError, AccountError)
PROPS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPS
@given(body=answers, status=st.sampled_from(STATUS_CODES), retry=retry_after_headers)
def test_parsers_only_raise_api_errors(body: Any, status: int, retry: str | None) -> None:
    headers = {} if retry is None else {"Retry-After": retry}
    raw = json.dumps(body, default=str).encode()
    error = error_from_answer(status, body, raw, "r", retry_after_from(headers, body))
    assert error is None or isinstance(error, ALLOWED)
    for parse in (parse_poll, parse_cancel):
        with contextlib.suppress(ALLOWED):
            parse(body, "r")
    with contextlib.suppress(ALLOWED):
        parse_poll(body, "r", want_outputs=False, max_outputs=3)


class ServedAnswers:
    """A server on 127.0.0.1 in its own thread whose next answer the test sets."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes, dict[str, str]] = (200, b"{}", {})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _handle(self, request: web.Request) -> web.Response:
        status, body, headers = self.answer
        return web.Response(
            status=status, body=body, headers=headers, content_type="application/json"
        )

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.session = aiohttp.ClientSession()
        self.client = RunComfyClient(
            self.session, f"http://127.0.0.1:{port}", "tok", timeout=5, max_body_bytes=4096
        )

    async def _stop(self) -> None:
        await self.session.close()
        await self.runner.cleanup()

    def close(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served() -> Iterator[ServedAnswers]:
    server = ServedAnswers()
    yield server
    server.close()


raw_bodies = (
    answers.map(lambda v: json.dumps(v, default=str).encode())
    | st.binary(max_size=64)
    | st.sampled_from(
        [
            b"",
            b"null",
            b"{",
            b'{"request_id": "\\ud800", "status": "completed", "output": "http://h/\\udfff"}',
            b'{"request_id": "a/../b?%", "status": "in_queue", "queue_position": 1e999}',
            b'{"request_id": "r", "status": "completed", "output": {"images": '
            + b'"x", ' * 2000
            + b'"y"]}}',
        ]
    )
)


@PROPS
@given(
    raw=raw_bodies,
    status=st.sampled_from(STATUS_CODES),
    retry=retry_after_headers,
    call=st.sampled_from(["submit", "result", "status", "cancel"]),
    request_id=st.text(st.characters(codec=None, exclude_categories=()), min_size=0, max_size=20),
)
def test_served_answers_only_raise_api_errors(
    served: ServedAnswers, raw: bytes, status: int, retry: str | None, call: str, request_id: str
) -> None:
    served.answer = (status, raw, {} if retry is None else {"Retry-After": retry})
    client = served.client
    coro = (
        client.submit("m/x", {"prompt": "p"})
        if call == "submit"
        else getattr(client, call)(request_id)
    )
    with contextlib.suppress(ALLOWED):
        served.run(coro)
