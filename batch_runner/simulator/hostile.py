"""Hostile answers for security tests of the client: one case at a time, on every matching answer.

Cases (SimConfig.hostile, optionally "CASE@kind,kind" to limit it to some answer kinds among
submit, status, result, cancel, file):

- non_json: submit/status/result answer 200 text/html.
- oversized: /result answers a 50 MB JSON body.
- wrong_types: submit's request_id is a number; status is a list (status, cancel, unfinished
  result); a completed result's output.images is a string.
- missing_fields: submit without request_id (nor URLs); status/result without status;
  cancel without outcome.
- unknown_status: status "exploded" on status/result/cancel.
- many_urls: a completed result lists 10,000 image URLs.
- weird_request_id: new request ids look like "../../etc/passwd?x=%2F&n=7" (routed when quoted).
- redirect_offhost: file URLs answer 302 to the same path on http://127.0.0.2:PORT.
- echo_headers: the headers of every file request are kept in stats["file_request_headers"].
- bad_file: file bodies are HTML while Content-Type still claims an image.
- offhost_urls: output URLs point at http://127.0.0.2:PORT/files/...

The 127.0.0.2 listener exists when the simulator was started on 127.0.0.1 (see server.py).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from batch_runner.simulator.config import SimConfig, parse_hostile

OFFHOST = "127.0.0.2"
OVERSIZED_BYTES = 50 * 1024 * 1024
MANY_URLS = 10_000
BAD_FILE = b"<!doctype html><html><body><h1>Not an image</h1></body></html>\n"
_HTML = "<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>\n"
_CHUNK = 1024 * 1024


def case_for(config: SimConfig, kind: str) -> str | None:
    """The hostile case that applies to answers of `kind`, if any."""
    case, kinds = parse_hostile(config.hostile)
    return case if case is not None and kind in kinds else None


def local_port(request: web.BaseRequest) -> int:
    """The port this request arrived on (both listeners share it)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else int(request.url.port or 80)


def is_offhost(request: web.BaseRequest) -> bool:
    """Whether the request came in on the second (127.0.0.2) listener."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return bool(sockname) and sockname[0] == OFFHOST


def url_base(case: str | None, request: web.BaseRequest, base: str) -> str:
    """Where output file URLs point: the simulator's own base, or the off-host one."""
    if case == "offhost_urls":
        return f"http://{OFFHOST}:{local_port(request)}"
    return base


def api_answer(case: str | None, kind: str, payload: dict[str, Any]) -> web.StreamResponse:
    """The answer for a successful API call, spoiled as `case` demands."""
    if case == "non_json" and kind in ("submit", "status", "result"):
        return web.Response(text=_HTML, content_type="text/html")
    if case == "oversized" and kind == "result":
        return OversizedResponse(payload)
    if case == "wrong_types":
        payload = _wrong_types(kind, payload)
    elif case == "missing_fields":
        payload = _missing_fields(kind, payload)
    elif case == "unknown_status" and kind != "submit":
        payload = {k: v for k, v in payload.items() if k != "output"} | {"status": "exploded"}
    return web.json_response(payload)


def _wrong_types(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    payload = dict(payload)
    if kind == "submit":
        payload["request_id"] = 12345
    elif kind == "result" and isinstance(payload.get("output"), dict):
        urls = [u for v in payload["output"].values() for u in (v if isinstance(v, list) else [v])]
        payload["output"] = {"images": urls[0] if urls else ""}
    else:
        payload["status"] = [payload.get("status")]
    return payload


def _missing_fields(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    gone = {
        "submit": {"request_id", "status_url", "result_url", "cancel_url"},
        "status": {"status"},
        "result": {"status"},
        "cancel": {"outcome"},
    }[kind]
    return {k: v for k, v in payload.items() if k not in gone}


def spoil_urls(case: str | None, urls: list[str]) -> list[str]:
    """For many_urls, repeat the job's URLs (each made distinct) up to 10,000 entries."""
    if case != "many_urls" or not urls:
        return urls
    return [f"{urls[i % len(urls)]}&copy={i}" for i in range(MANY_URLS)]


def file_redirect(case: str | None, request: web.BaseRequest) -> web.Response | None:
    """For redirect_offhost, a 302 from the main listener to the same file on 127.0.0.2."""
    if case != "redirect_offhost" or is_offhost(request):
        return None
    target = f"http://{OFFHOST}:{local_port(request)}{request.rel_url}"
    return web.Response(status=302, headers={"Location": target})


class OversizedResponse(web.StreamResponse):
    """A valid JSON result padded to 50 MB, streamed so the simulator never holds it whole."""

    def __init__(self, payload: dict[str, Any]):
        super().__init__(headers={"Content-Type": "application/json"})
        head = json.dumps(payload)[:-1].encode() + b', "padding": "'
        self._head, self._tail = head, b'"}'
        self._fill = max(0, OVERSIZED_BYTES - len(head) - len(self._tail))
        self.content_length = len(head) + self._fill + len(self._tail)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        writer = await super().prepare(request)
        await self.write(self._head)
        chunk, left = b"x" * _CHUNK, self._fill
        while left > 0:
            await self.write(chunk[: min(left, _CHUNK)])
            left -= _CHUNK
        await self.write(self._tail)
        return writer
