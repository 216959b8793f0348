"""RunComfy answers: pure parsing of every reply into our records or our errors.

No I/O here; the property tests feed it random data. An answer that is not what the API
documents becomes `ApiError(kind=ErrorKind.BAD_ANSWER)`, never a KeyError or TypeError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from batch_runner.api.http import per_origin
from batch_runner.catalog import number_or_none
from batch_runner.errors import AccountError, ApiError, ErrorKind, TransportError


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the id of the new request."""

    request_id: str


@dataclass(frozen=True)
class Poll:
    """One /result or /status answer, normalised: `status` is one of STATUSES, or "unknown"
    for a spelling nobody documents (`raw_status` keeps it; the job is not finished)."""

    request_id: str
    status: str
    queue_position: int | None
    outputs: list[str]
    error: str | None
    duration: float | None = None  # server-measured created_at → finished_at, when both given
    cost: float | None = None  # USD, once finished (asked with include_cost=true)
    model_id: str | None = None  # the model that ran it, as /result names it
    raw_status: str | None = None


@dataclass(frozen=True)
class CancelOutcome:
    """The answer to a cancel: `outcome` is "cancelled" or "not_cancellable"."""

    request_id: str
    status: str
    outcome: str


def usable_id(request_id: object) -> bool:
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LEN:
        return False
    try:
        request_id.encode("utf-8")  # a lone surrogate from JSON could not be quoted
    except UnicodeEncodeError:
        return False
    return True


def json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8-sig"))  # JSON on the network is UTF-8 (RFC 8259)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


MAX_ID_LEN = 256
STATUSES = frozenset({"in_queue", "in_progress", "completed", "failed", "cancelled"})
UNKNOWN = "unknown"  # a status nobody documents: not finished (CONTRACT §1)
# RunComfy's own clients read these as "not finished yet" too (CONTRACT §1)
_ALIASES = {
    "succeeded": "completed",
    "canceled": "cancelled",
    "pending": "in_queue",
    "waiting": "in_queue",
    "starting": "in_queue",
    "processing": "in_progress",
}
_MAX_DEPTH = 32  # nesting followed under `output`; deeper than any schema, shallow for a stack
_TEXT_CAP = 300


def bad_answer(message: str, request_id: str | None, status: int | None = None) -> ApiError:
    """A well-formed answer with the wrong shape (missing fields, wrong types)."""
    return ApiError(
        f"unexpected answer: {message}",
        status=status,
        request_id=request_id,
        kind=ErrorKind.BAD_ANSWER,
    )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _TEXT_CAP else text[:_TEXT_CAP] + "…"


def _detail_text(detail: Any) -> str:
    """422001 `detail` compactly: "loc.path: msg; ..." for the usual shape, JSON otherwise."""
    if not isinstance(detail, list):
        return _short(detail)
    parts = []
    for item in detail[:10]:
        if isinstance(item, dict) and isinstance(item.get("msg"), str):
            loc = item.get("loc")
            where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
            parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        else:
            parts.append(_short(item))
    return _short("; ".join(parts))


def _error_code(body: Any) -> tuple[bool, int | None]:
    """Whether the body carries a top-level error_code, and its value as an int if it is one."""
    if not isinstance(body, dict):
        return False, None
    code = body.get("error_code")
    if code is None or code == 0 or code == "" or code is False:
        return False, None
    if isinstance(code, int) and not isinstance(code, bool):
        return True, code
    if isinstance(code, str) and code.strip().isdigit() and len(code) < 12:
        return True, int(code)
    return True, None


def _error_message(body: Any, raw: bytes) -> str:
    if isinstance(body, dict):
        for field in ("error_message", "message"):
            if isinstance(body.get(field), str) and body[field]:
                text = _short(body[field])
                break
        else:
            text = ""
        if body.get("detail") is not None:
            text = f"{text} [{_detail_text(body['detail'])}]".strip()
        return text
    return _one_line(raw[:_TEXT_CAP].decode("utf-8", errors="replace")) if raw else ""


_TAG = re.compile(r"<[^>]*>|<[^>]*$")
_LINE_CAP = 80  # a gateway's HTML page is noise in a failure line: its gist fits in this


def _one_line(text: str) -> str:
    """A non-JSON error body (an HTML page, a stack trace) as one short line of its words."""
    words = " ".join(_TAG.sub(" ", text).split())
    return words if len(words) <= _LINE_CAP else words[:_LINE_CAP] + "…"


def _kind(status: int, code: int | None) -> ErrorKind:
    if code == 404001:
        return ErrorKind.EXPIRED
    if status == 429 or (code is not None and code // 1000 == 429):
        return ErrorKind.THROTTLED
    if status >= 500:
        return ErrorKind.HTTP_5XX
    if status >= 400:
        return ErrorKind.HTTP_4XX
    if code is not None and 500000 <= code < 600000:
        return ErrorKind.HTTP_5XX
    if code is not None and 400000 <= code < 500000:
        return ErrorKind.HTTP_4XX
    return ErrorKind.ERROR_200 if 200 <= status < 300 else ErrorKind.BAD_ANSWER


def error_from_answer(
    status: int, body: Any, raw: bytes, request_id: str | None, retry_after: float | None
) -> Exception | None:
    """The error an answer stands for, or None for a 2xx JSON object without `error_code`."""
    if 300 <= status < 400:
        return bad_answer(f"HTTP {status} redirect (not followed)", request_id, status)
    has_code, code = _error_code(body)
    if 200 <= status < 300 and not has_code:
        if body is None:
            return TransportError(
                f"HTTP {status} answer is not JSON",
                status=status,
                request_id=request_id,
                kind=ErrorKind.BAD_ANSWER,
            )
        if not isinstance(body, dict):
            return bad_answer("not a JSON object", request_id, status)
        return None
    message = _error_message(body, raw)
    if status == 401 or code == 400004:
        return AccountError(
            f"API token rejected ({code or status}): {message or 'unauthorized'}"
            " — check RUNCOMFY_API_TOKEN"
        )
    if status == 402 or code == 400002:
        return AccountError(f"insufficient credits ({code or status}): {message or 'top up'}")
    label = f"HTTP {status}" + (f" error {code}" if code is not None else "")
    return ApiError(
        f"{label}: {message}" if message else label,
        status=status,
        error_code=code,
        request_id=request_id,
        retry_after=retry_after,
        kind=_kind(status, code),
    )


def _status(body: dict, request_id: str) -> str:
    raw = body.get("status")
    if not isinstance(raw, str):
        raise bad_answer("status missing or not a string", request_id)
    status = raw.strip().lower()
    status = _ALIASES.get(status, status)
    return status if status in STATUSES else UNKNOWN


def _queue_position(value: Any) -> int | None:
    # advisory only: a strange value is ignored rather than failing a paid job
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or value > 10**9:
        return None
    return int(value)


def _is_web_url(value: str) -> bool:
    """http(s) with a host. Only the scheme and authority decide (the text before the third
    "/", which a URL's outputs mostly share), so that answer is remembered per origin."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return per_origin(_WEB_ORIGINS, value, _has_web_origin)


def _has_web_origin(value: str) -> bool:
    try:
        split = urlsplit(value)
    except ValueError:
        return False
    return split.scheme in ("http", "https") and bool(split.hostname)


_WEB_ORIGINS: dict[tuple[str, str], bool] = {}


def _outputs(output: Any, request_id: str, max_outputs: int) -> list[str]:
    """Every http(s) URL anywhere under `output` (nested objects and lists, any key: `image`,
    `videos`, `url`, `path`, ...), in document order, each once (CONTRACT §1)."""
    found: dict[str, None] = {}
    stack: list[tuple[Any, int]] = [(output, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if len(value) <= 8192 and _is_web_url(value):
                found[value] = None
                if len(found) > max_outputs:
                    raise bad_answer(f"more than {max_outputs} output files", request_id)
        elif depth < _MAX_DEPTH and isinstance(value, dict):
            stack.extend((v, depth + 1) for v in reversed(list(value.values())))
        elif depth < _MAX_DEPTH and isinstance(value, list):
            stack.extend((v, depth + 1) for v in reversed(value))
    if not found:
        raise bad_answer("completed without output files", request_id)
    return list(found)


def parse_poll(
    body: Any, request_id: str, *, max_outputs: int = 1000, want_outputs: bool = True
) -> Poll:
    """Check and normalise a /result (`want_outputs`) or /status answer."""
    if not isinstance(body, dict):
        raise bad_answer("not a JSON object", request_id)
    if not isinstance(body.get("request_id", request_id), str):
        raise bad_answer("request_id is not a string", request_id)
    status = _status(body, request_id)
    outputs: list[str] = []
    if status == "completed" and want_outputs:
        outputs = _outputs(body.get("output"), request_id, max_outputs)
    error = None
    if status == "failed":
        reason = body.get("error") or body.get("error_message")
        error = _short(reason) if reason else None
    position = _queue_position(body.get("queue_position"))
    duration = _duration(body.get("created_at"), body.get("finished_at"))
    cost = _cost(body.get("cost")) if status in _FINISHED else None
    model_id = body.get("model_id")
    model_id = model_id[:_TEXT_CAP] if isinstance(model_id, str) and model_id else None
    raw = _short(body["status"])[:80] if status == UNKNOWN else None
    return Poll(request_id, status, position, outputs, error, duration, cost, model_id, raw)


_FINISHED = frozenset({"completed", "failed", "cancelled"})


def _cost(value: Any) -> float | None:
    """A finished job's `cost` in USD; anything but a finite non-negative number is unknown."""
    return number_or_none(value)


def parse_balance(body: Any) -> float:
    """The balance in USD of GET /prod/v2/balance: `balance_microdollars` (an exact integer)
    when the answer has it, else `balance_usd` (CONTRACT §1)."""
    if not isinstance(body, dict):
        raise bad_answer("balance answer is not a JSON object", None)
    micro = body.get("balance_microdollars")
    if isinstance(micro, int) and not isinstance(micro, bool):
        return micro / 1_000_000  # a negative balance stays negative: it covers nothing
    value = _cost(body.get("balance_usd"))
    if value is None:
        raise bad_answer("balance answer has no usable balance_usd", None)
    return value


def _moment(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and len(value) < 64:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


def _duration(created: Any, finished: Any) -> float | None:
    """Seconds from `created_at` to `finished_at` (ISO 8601 or epoch), if both make sense."""
    try:
        start, end = _moment(created), _moment(finished)
    except (ValueError, TypeError, OverflowError, OSError):
        return None
    if start is None or end is None:
        return None
    seconds = end - start
    return seconds if math.isfinite(seconds) and 0 <= seconds <= 1e6 else None


_NOT_CANCELLABLE_STATES = frozenset({"in_progress", "completed", "failed"})


def parse_cancel(body: Any, request_id: str) -> CancelOutcome:
    """Check and normalise a cancel answer."""
    if not isinstance(body, dict):
        raise bad_answer("not a JSON object", request_id)
    raw_status = body.get("status")
    status = raw_status.strip().lower() if isinstance(raw_status, str) else ""
    status = _ALIASES.get(status, status)
    outcome = body.get("outcome")
    if isinstance(outcome, str):
        outcome = _ALIASES.get(outcome.strip().lower(), outcome.strip().lower())
    elif outcome is None and status == "cancelled":
        outcome = "cancelled"
    elif outcome is None and status in _NOT_CANCELLABLE_STATES:
        outcome = "not_cancellable"
    if outcome not in ("cancelled", "not_cancellable"):
        raise bad_answer(f"cancel outcome {_short(outcome)[:80]!r}", request_id)
    return CancelOutcome(request_id, status or outcome, outcome)
