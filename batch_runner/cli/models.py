"""`batch-runner models`: list the known models, or one model's inputs (CONTRACT §2).

An argument containing "/" is a MODEL_ID (every RunComfy id has one: owner/model/task);
anything else is SEARCH words matched against ids and names.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from batch_runner import catalog
from batch_runner.cli.console import print_json, run_async, say
from batch_runner.cli.token import token_if_any
from batch_runner.errors import UsageError
from batch_runner.settings import API_BASE_ENV, DEFAULT_API_BASE, RunSettings


def cmd_models(args: argparse.Namespace) -> int:
    from batch_runner.run.catalog import list_models, model_entry

    base = args.api_base or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE
    settings = RunSettings(api_base=base, offline=bool(args.offline))
    settings.check()
    token = None if settings.offline else token_if_any(args.token_file)
    query = args.query.strip() if args.query else None
    if query and "/" in query:
        found = run_async(model_entry(query, settings, token), debug=args.debug)
        entry, warnings, refusal = found
        _warn(warnings)
        if entry is None:
            raise UsageError(_unknown(query, base, refusal))
        if args.json:
            print_json(entry.to_json(schema=True))
        else:
            print(format_model(entry))
        return 0
    category = getattr(args, "category", None)
    listing = list_models(settings, token, query, args.kind, category)
    found, warnings = run_async(listing, debug=args.debug)
    _warn(warnings)
    if args.json:
        print_json({"models": [e.to_json() for e in found]})
    else:
        print(format_listing(found))
    return 0


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        say(f"warning: {warning}")


def _unknown(model: str, api_base: str, refusal: str | None) -> str:
    """`model MODEL`: an unknown model, with the ids nearest to it that batch_runner knows."""
    text = refusal or catalog.unknown_model_text(model, catalog.known_ids(api_base.rstrip("/")))
    return f"model {model}: {text}"


# ---- pure formatting ------------------------------------------------------------------------


def price_text(entry: catalog.CatalogEntry) -> str:
    if entry.base_price_usd is None:
        return "-"
    unit = {"output": "file", "second": "second"}.get(entry.price_unit or "", entry.price_unit)
    return f"${entry.base_price_usd:g}/{unit}" if unit else f"${entry.base_price_usd:g}"


def format_listing(entries: list[catalog.CatalogEntry]) -> str:
    if not entries:
        return "no models match"
    rows = [("MODEL", "KIND", "REQUIRED INPUTS", "PRICE")]
    rows += [
        (e.model_id, e.kind or "?", ", ".join(e.required) or "-", price_text(e)) for e in entries
    ]
    lines = _table(rows)
    lines.append(f"{len(entries)} models; `batch-runner models MODEL_ID` shows one's inputs")
    return "\n".join(lines)


def format_model(entry: catalog.CatalogEntry) -> str:
    what = entry.kind or "unknown kind"
    if entry.categories:
        what += f"; {', '.join(entry.categories)}"
    head = [
        f"{entry.model_id} ({what}; from the {entry.source} catalogue)",
        f"price: {price_text(entry).replace('-', 'unknown')}"
        + (f" ({entry.pricing_note})" if entry.pricing_note else ""),
    ]
    if not entry.runnable:
        head.append(f"not runnable: {catalog.not_runnable_text(str(entry.endpoint_kind))}")
    schema = entry.input_schema or {}
    props = schema.get("properties") or {}
    if not props:
        return "\n".join([*head, "inputs: not described by the catalogue"])
    media = catalog.media_fields(schema)
    required = set(entry.required)
    rows: list[tuple[str | list[str], ...]] = [
        ("INPUT", "TYPE", "REQUIRED", "DEFAULT", "ALLOWED", "MEDIA")
    ]
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        kind, many = media.get(name, (None, False))
        rows.append(
            (
                name,
                _type(prop),
                "yes" if name in required else "",
                _short(prop["default"]) if "default" in prop else "",
                _wrapped(allowed_text(prop), ALLOWED_WIDTH),
                f"{kind}{' (list)' if many else ''}" if kind else "",
            )
        )
    return "\n".join([*head, "", *_table(rows)])


ALLOWED_WIDTH = 48  # the ALLOWED column wraps here: every value is shown, none cut off


def allowed_text(prop: dict[str, Any]) -> str:
    """Allowed values or bounds of one input, e.g. "2K, 3K" or "1..15" (all of them)."""
    if isinstance(prop.get("enum"), list):
        return ", ".join(str(v) for v in prop["enum"])
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None or high is not None:
        return f"{'' if low is None else low}..{'' if high is None else high}"
    if prop.get("maxLength") is not None:
        return f"at most {prop['maxLength']} characters"
    items = prop.get("items")
    return allowed_text(items) if isinstance(items, dict) else ""


def _wrapped(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters, broken after the commas (a value longer
    than the width keeps a line of its own)."""
    lines: list[str] = []
    for part in text.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return lines or [""]


def _type(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = "|".join(str(k) for k in kind)
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"array of {prop['items'].get('type', 'any')}"
    return str(kind or "any")


def _short(value: Any, width: int = 30) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(rows: list[tuple[str | list[str], ...]]) -> list[str]:
    """Rows of cells in aligned columns; a cell given as lines spans as many table lines."""
    cells = [[c if isinstance(c, list) else [c] for c in row] for row in rows]
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(len(cells[0]))]
    out = []
    for row in cells:
        for k in range(max(len(c) for c in row)):
            parts = [
                (c[k] if k < len(c) else "").ljust(w) for c, w in zip(row, widths, strict=True)
            ]
            out.append("  ".join(parts).rstrip())
    return out
