"""Media inputs as the simulator checks them (CONTRACT §1 "Media inputs").

`https://` URLs are accepted unfetched, and so are the URLs of the simulator's own output files
while they live (`own`: one that is past `--url-ttl`, or whose request is forgotten, is refused
with a `url_fetch` detail, as RunComfy refuses a URL it cannot fetch); `data:` URIs are
decoded, their media kind sniffed from the bytes and compared with the field's, and the field's
`validations` applied (image sizes read from the header with Pillow, without decoding the
pixels); any other scheme is refused. Unknown validation rules are skipped, as RunComfy's
clients do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from batch_runner.catalog import media_fields
from batch_runner.manifest.media import broken_rule, decode_data_uri, field_rules, image_size, sniff

Detail = dict[str, Any]
OwnCheck = Callable[[str], str | None]  # why one of its own file URLs cannot be fetched, or None


def media_problems(
    schema: dict[str, Any], body: dict[str, Any], own: OwnCheck | None = None
) -> tuple[list[Detail], Any]:
    """422 details for the media inputs of `body`, and the (width, height) of the first image
    sent inline (None when there is none), which image outputs may echo."""
    detail: list[Detail] = []
    first_size = None
    props = schema.get("properties") or {}
    for name, (kind, _many) in media_fields(schema).items():
        value = body.get(name)
        values = value if isinstance(value, list) else [value]
        rules = field_rules(props[name])
        for i, item in enumerate(values):
            if not isinstance(item, str):
                continue  # the schema check reports wrong types
            loc = ["body", name, i] if isinstance(value, list) else ["body", name]
            problem, size = _check_one(item, kind, rules, own)
            if problem is not None:
                detail.append({"loc": loc, **problem})
            elif size is not None and first_size is None:
                first_size = size
    return detail, first_size


def media_sources(schema: dict[str, Any], body: dict[str, Any]) -> Counter[str]:
    """How the media inputs of an accepted body came: `own` (URLs of the simulator's own
    files), `data` (sent inline) or `url` (any other URL), for /_sim/stats."""
    found: Counter[str] = Counter()
    for name in media_fields(schema):
        value = body.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                kind = "own" if own_file(item) else "data" if item.startswith("data:") else "url"
                found[kind] += 1
    return found


def _check_one(
    value: str, kind: str, rules: list[Any], own: OwnCheck | None
) -> tuple[dict[str, str] | None, Any]:
    if own_file(value):
        why = own(value) if own is not None else None
        if why is not None:
            return {"msg": f"cannot fetch {value}: {why}", "type": "url_fetch"}, None
        return None, None
    if value.startswith("https://"):
        return None, None
    if not value.startswith("data:"):
        msg = f"a {kind} input must be an https:// URL or a data: URI"
        return {"msg": msg, "type": "url_scheme"}, None
    data = decode_data_uri(value)
    if data is None:
        return {"msg": "malformed data: URI", "type": "data_uri"}, None
    found = sniff(data)
    if found is None or found[0] != kind:
        what = f"a {found[0]} ({found[1]})" if found else "not a known media type"
        return {"msg": f"expected {kind} data, got {what}", "type": "media_kind"}, None
    size = image_size(data) if kind == "image" else None
    if kind == "image" and size is None:
        return {"msg": "image data cannot be read", "type": "media_kind"}, None
    return _rule_problem(rules, len(data), size), size


def own_file(value: str) -> bool:
    """A URL of the simulator's own output files (served over http on a loopback address):
    what a pipeline's child is sent (CONTRACT §5)."""
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "http" and loopback and parts.path.startswith("/files/")


def _rule_problem(rules: list[Any], n_bytes: int, size: Any) -> dict[str, str] | None:
    """The first validation rule the file breaks, as a detail; None when all hold."""
    broken = broken_rule(rules, n_bytes, size)
    if broken is None:
        return None
    name, limit, got = broken
    return {"msg": f"fails validation {name} {limit} (got {got})", "type": f"validation:{name}"}
