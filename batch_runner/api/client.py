"""The RunComfy Model API client: four calls, every answer checked, every failure translated.

aiohttp errors become ours here and nowhere else (`_translated`): `AccountError` for a
rejected token or missing credits, `ApiError` (with a `kind`, used by `policy.classify`) for
an answer that is an error, `TransportError` when there is no usable answer.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from batch_runner import catalog
from batch_runner.api.answers import (
    CancelOutcome,
    Poll,
    Submitted,
    bad_answer,
    error_from_answer,
    json_or_none,
    parse_balance,
    parse_cancel,
    parse_poll,
    usable_id,
)
from batch_runner.api.deadlines import Deadlines
from batch_runner.api.http import retry_after_from
from batch_runner.catalog import entries_from_answer
from batch_runner.errors import ApiError, ErrorKind, TransportError

if TYPE_CHECKING:
    from batch_runner.api.limits import RateLimiter

__all__ = ["CancelOutcome", "Poll", "RunComfyClient", "Submitted"]

# the time a loaded server needs to answer a submit: RunComfy's own partner client waits 90 s
SUBMIT_TIMEOUT = 90.0


class RunComfyClient:
    """Calls the API at `base_url` with the token; the session is the caller's (no default auth)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str | None,
        *,
        limiter: RateLimiter | None = None,
        timeout: float = 30.0,
        submit_timeout: float | None = None,
        max_body_bytes: int = 1_048_576,
        max_outputs: int = 1000,
        deadlines: Deadlines | None = None,
    ):
        self._session = session
        self._base = base_url.rstrip("/")
        self._token = token or None
        self._limiter = limiter
        # the whole call is limited by `deadlines` (one timer for all calls, not one each);
        # aiohttp only limits opening a new connection
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 15.0))
        self._limit = timeout
        # a submit's answer may be given longer (a run gives it SUBMIT_TIMEOUT): giving up on a
        # slow answer turns it into a possible duplicate
        self._submit_limit = submit_timeout or timeout
        self._deadlines = deadlines or Deadlines()
        self._max_body = max_body_bytes
        self._max_outputs = max_outputs
        self._headers = {"Accept": "application/json"}  # aiohttp copies them per request
        if self._token:
            self._headers["Authorization"] = f"Bearer {self._token}"

    async def submit(self, model: str, inputs: dict) -> Submitted:
        """POST the inputs to the model; the answer's request_id identifies the new job."""
        url = f"{self._base}/v1/models/{_model_path(model)}"
        try:
            body = await self._call("POST", url, None, json_body=inputs, limit=self._submit_limit)
        except ApiError as exc:
            if exc.error_code == 400001:  # the model, which validation could not check
                said = f" ({exc.message})" if exc.message else ""
                text = catalog.unknown_model_text(model, catalog.known_ids(self._base))
                exc.message = f"model {model}: {text}; the API refused it{said}"
                exc.args = (exc.message,)
            raise
        request_id = body.get("request_id")
        if not usable_id(request_id):
            raise bad_answer("submit answer has no usable request_id", None)
        return Submitted(request_id)

    async def result(self, request_id: str) -> Poll:
        """GET /v1/requests/{id}/result: the status, and the output URLs once completed."""
        url = self._request_url(request_id, "result") + "?include_cost=true"  # CONTRACT §1
        body = await self._call("GET", url, request_id)
        return parse_poll(body, request_id, max_outputs=self._max_outputs)

    async def status(self, request_id: str) -> Poll:
        """GET /v1/requests/{id}/status: the status and queue position (no outputs)."""
        body = await self._call("GET", self._request_url(request_id, "status"), request_id)
        return parse_poll(body, request_id, max_outputs=self._max_outputs, want_outputs=False)

    async def model(self, model: str) -> dict[str, Any]:
        """GET /v1/models/{model_path}: the model's live catalogue entry (raw)."""
        body = await self._call("GET", f"{self._base}/v1/models/{_model_path(model)}", None)
        found = entries_from_answer(body)
        if not found:
            raise bad_answer("catalogue answer has no model entry", None)
        return found[0]

    async def balance(self, account_base: str) -> float:
        """GET {account_base}/prod/v2/balance: the account's balance in USD (same token)."""
        body = await self._call("GET", f"{account_base.rstrip('/')}/prod/v2/balance", None)
        return parse_balance(body)

    async def cancel(self, request_id: str) -> CancelOutcome:
        """POST /v1/requests/{id}/cancel; only queued jobs can be cancelled."""
        body = await self._call("POST", self._request_url(request_id, "cancel"), request_id)
        return parse_cancel(body, request_id)

    async def catalog_page(
        self,
        *,
        search: str | None = None,
        category: str | None = None,
        schemas: bool = True,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        """GET /v1/models?...[&include_schema=true]: one page of the catalogue (an envelope
        `catalog.entries_from_answer` reads)."""
        query = {"include_schema": "true"} if schemas else {}
        query |= {"limit": str(limit), "offset": str(offset)}
        query |= {k: v for k, v in (("search", search), ("category", category)) if v}
        url = f"{self._base}/v1/models?{urlencode(query)}"
        return await self._call("GET", url, None, bare_list=True)

    def _request_url(self, request_id: str, what: str) -> str:
        if not usable_id(request_id):
            raise bad_answer("request_id must be a non-empty string of at most 256 chars", None)
        # safe="" so "/", "?" and "%" in an id can never change the path we call
        quoted = request_id if _PLAIN_ID.fullmatch(request_id) else quote(request_id, safe="")
        return f"{self._base}/v1/requests/{quoted}/{what}"

    async def _call(
        self,
        method: str,
        url: str,
        request_id: str | None,
        *,
        json_body: Any = None,
        limit: float | None = None,
        bare_list: bool = False,
    ) -> dict[str, Any]:
        if self._limiter is not None and not self._limiter.try_acquire():
            await self._limiter.acquire()
        try:
            status, resp_headers, raw = await self._send(
                method, url, json_body, limit or self._limit
            )
        except TransportError as exc:
            exc.request_id = request_id
            raise
        if bare_list and 200 <= status < 300 and isinstance(json_or_none(raw), list):
            return {"models": json_or_none(raw)}  # the catalogue's envelope is undocumented
        try:
            return self._check(status, resp_headers, raw, request_id)
        except ApiError as exc:
            exc.message = self._scrub(exc.message)
            exc.args = (exc.message,)
            raise
        except Exception as exc:  # AccountError and friends: scrub, keep the type
            exc.args = tuple(self._scrub(str(a)) for a in exc.args)
            raise

    async def _send(
        self, method: str, url: str, json_body: Any, limit: float
    ) -> tuple[int, Any, bytes]:
        try:
            with self._deadlines.limit(limit):
                async with self._session.request(
                    method,
                    URL(url, encoded=True),  # keep %2F encoded on the wire
                    json=json_body,
                    headers=self._headers,
                    allow_redirects=False,
                    timeout=self._timeout,
                ) as resp:
                    raw = await _read_capped(resp, self._max_body)
                    return resp.status, resp.headers, raw
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise _translated(exc) from exc

    def _check(self, status: int, headers: Any, raw: bytes, request_id: str | None) -> dict:
        body = json_or_none(raw)
        retry_after = retry_after_from(headers, body)
        error = error_from_answer(status, body, raw, request_id, retry_after)
        if self._limiter is not None:
            if status == 429:
                self._limiter.on_throttled(retry_after)
            else:
                self._limiter.on_success()
        if error is not None:
            raise error
        return body  # error_from_answer returns None only for a 2xx JSON object

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


# characters quote(safe="") leaves as they are: such an id is used unchanged
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.~-]+")


@functools.lru_cache(maxsize=32)  # one model per run, quoted once
def _model_path(model: str) -> str:
    parts = model.split("/") if isinstance(model, str) else [""]
    if any(p in ("", ".", "..") for p in parts):
        raise ApiError(f"invalid model path {model!r}", sent=False, kind=ErrorKind.HTTP_4XX)
    return "/".join(quote(p, safe="") for p in parts)


def _translated(exc: OSError | aiohttp.ClientError) -> TransportError:
    """The one place an aiohttp or socket error of an API call becomes ours."""
    dropped, timeout = ErrorKind.DROPPED, ErrorKind.TIMEOUT
    match exc:
        case aiohttp.ClientConnectorError():
            # a closed port reads "[Errno 111] Connect call failed (...)": say it in words
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else (exc.os_error or exc)
            message, sent, kind = f"cannot connect to the API: {reason}", False, dropped
        case ConnectionRefusedError():
            message, sent, kind = "cannot connect to the API: connection refused", False, dropped
        case aiohttp.ConnectionTimeoutError():
            message, sent, kind = "timed out connecting to the API", False, timeout
        case TimeoutError():
            message, sent, kind = "timed out waiting for the API's answer", True, timeout
        case aiohttp.ClientPayloadError():
            message, sent, kind = "the API's answer was cut short", True, dropped
        case _:
            message, sent, kind = f"connection lost: {type(exc).__name__}", True, dropped
    return TransportError(message, sent=sent, kind=kind)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """Read the body in chunks, refusing anything larger than `cap` bytes."""
    length = resp.content_length
    if length is not None and length > cap:
        raise TransportError(
            f"answer too large ({length} bytes > {cap})",
            status=resp.status,
            kind=ErrorKind.BAD_ANSWER,
        )
    if length is not None:  # the usual case: one read of a known, allowed size
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > cap:
            raise TransportError(
                f"answer too large (> {cap} bytes)", status=resp.status, kind=ErrorKind.BAD_ANSWER
            )
        chunks.append(chunk)
    return b"".join(chunks)
