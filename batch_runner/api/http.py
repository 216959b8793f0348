"""HTTP helpers shared by the API client and the file downloader: pure, no I/O.

Both `api.answers` (API answers) and `outputs.download` (file hosts) read a Retry-After and
remember per-origin URL decisions; they import these from here rather than from each other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from batch_runner.api.policy import RETRY_AFTER_CAP

MAX_ORIGINS = 1024  # origins one memo remembers; a run sees a handful


def retry_after_from(headers: Any, body: Any) -> float | None:
    """Seconds the server asked us to wait: Retry-After (seconds or HTTP date) or `retry_after`."""
    header = headers.get("Retry-After") if headers is not None else None
    asked = _header_seconds(header.strip()) if isinstance(header, str) else None
    in_body = _seconds(body.get("retry_after")) if isinstance(body, dict) else None
    if asked is None or in_body is None:
        return in_body if asked is None else asked
    return max(asked, in_body)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return min(value, RETRY_AFTER_CAP) if math.isfinite(value) and value >= 0 else None


def _header_seconds(header: str) -> float | None:
    try:
        return _seconds(float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
        return _seconds(max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def per_origin(memo: dict[tuple[str, str], bool], url: str, decide: Callable[[str], bool]) -> bool:
    """`decide(url)`, remembered in `memo` by the URL's origin (`url_origin`): for a decision
    that depends on nothing but scheme, host, port and user. At most MAX_ORIGINS are kept."""
    origin = url_origin(url)
    if origin is None:
        return decide(url)
    known = memo.get(origin)
    if known is None:
        known = decide(url)
        if len(memo) < MAX_ORIGINS:
            memo[origin] = known
    return known


def url_origin(url: str) -> tuple[str, str] | None:
    """("https:", "host:port") for "https://host:port/...": the text before the third "/",
    which alone decides a URL's scheme, host, port and user (as urlsplit reads them); None
    when the URL does not start that way."""
    parts = url.split("/", 3)
    return (parts[0], parts[2]) if len(parts) >= 3 and not parts[1] else None
