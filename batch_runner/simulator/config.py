"""Simulator settings: the SimConfig dataclass, its command-line flags and live overrides."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from batch_runner.errors import UsageError

OUTPUT_STYLES = ("auto", "image", "images", "video", "videos", "audio", "audios", "nested")
DEFAULT_BALANCE = 1_000_000.0
OUTPUT_TYPES = ("IMAGE", "VIDEO", "AUDIO")
HOSTILE_CASES = (
    "non_json",
    "oversized",
    "wrong_types",
    "missing_fields",
    "unknown_status",
    "many_urls",
    "weird_request_id",
    "redirect_offhost",
    "echo_headers",
    "bad_file",
    "offhost_urls",
)
HOSTILE_KINDS = ("submit", "status", "result", "cancel", "file")
_RATES = ("fail_rate", "error_rate", "drop_rate", "lost_submit_rate", "truncate_rate")


@dataclass
class SimConfig:
    """Everything the simulator can be told; mutable, and read live on every request."""

    token: str = "sim-token"
    latency: tuple[float, float] = (0.0, 0.0)
    capacity: int = 0
    fail_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    lost_submit_rate: float = 0.0
    submit_delay: float = 0.0  # seconds between creating a job and answering its submit
    file_delay: float = 0.0  # seconds before a file request is answered (a slow storage host)
    # a testing switch (POST /_sim/config only): a submit whose model id is one of these, or
    # whose prompt contains one, is created and its answer held until the entry is removed
    hold_submits: list[str] = dataclasses.field(default_factory=list)
    rate_limit: float | None = None
    truncate_rate: float = 0.0
    url_ttl: float | None = None
    request_ttl: float | None = None
    seed: int | None = None
    image_scale: float = 1.0
    pad_bytes: int = 0
    output_style: str = "auto"
    hostile: str | None = None
    balance: float = DEFAULT_BALANCE  # USD left; each completed job's cost is taken from it
    prices: dict[str, float] = dataclasses.field(default_factory=dict)  # --price MODEL=USD
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # live overrides
    # `--catalog FILE`: the live-shaped entries served instead of the bundled ones, by id
    catalog: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready mapping (the token included: it is the simulator's own)."""
        data = dataclasses.asdict(self)
        data["latency"] = list(self.latency)
        return data


def parse_latency(text: str) -> tuple[float, float]:
    """Parse "A" or "A:B" seconds into (A, B); raise UsageError when malformed."""
    parts = str(text).split(":")
    if len(parts) not in (1, 2):
        raise UsageError(f"--latency: expected A or A:B seconds, got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[-1])
    except ValueError:
        raise UsageError(f"--latency: expected A or A:B seconds, got {text!r}") from None
    return _check_latency((low, high))


def _check_latency(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        return parse_latency(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise UsageError(f"latency: expected [low, high] seconds, got {value!r}")
    low, high = (float(v) for v in value)
    if not (0 <= low <= high) or high == float("inf"):
        raise UsageError(f"latency: need 0 <= low <= high, got {low}:{high}")
    return (low, high)


def parse_hostile(value: str | None) -> tuple[str | None, frozenset[str]]:
    """Split "CASE" or "CASE@kind,kind" into the case and the answer kinds it applies to."""
    if not value:
        return None, frozenset(HOSTILE_KINDS)
    case, _, kinds = value.partition("@")
    if case not in HOSTILE_CASES:
        raise UsageError(f"hostile: unknown case {case!r} (allowed: {', '.join(HOSTILE_CASES)})")
    chosen = frozenset(k.strip() for k in kinds.split(",")) if kinds else frozenset(HOSTILE_KINDS)
    unknown = chosen - set(HOSTILE_KINDS)
    if unknown:
        raise UsageError(f"hostile: unknown kind(s) {sorted(unknown)} (allowed: {HOSTILE_KINDS})")
    return case, chosen


def validate(config: SimConfig) -> SimConfig:
    """Normalise and check every field in place; raise UsageError on the first bad one."""
    for name in _RATES:
        rate = float(getattr(config, name))
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"{name}: must be between 0 and 1, got {rate}")
        setattr(config, name, rate)
    config.latency = _check_latency(config.latency)
    for name in ("rate_limit", "url_ttl", "request_ttl"):
        value = getattr(config, name)
        if value is not None and not 0 < float(value) < math.inf:
            raise UsageError(f"{name}: must be a positive number, got {value}")
        setattr(config, name, None if value is None else float(value))
    for name in ("submit_delay", "file_delay"):
        value = float(getattr(config, name))
        if not 0 <= value < math.inf:
            raise UsageError(f"{name}: must be a finite number, not negative, got {value}")
        setattr(config, name, value)
    config.capacity, config.pad_bytes = int(config.capacity), int(config.pad_bytes)
    if config.capacity < 0 or config.pad_bytes < 0:
        raise UsageError("capacity and pad_bytes must not be negative")
    config.image_scale = float(config.image_scale)
    if not 0 < config.image_scale < math.inf:
        raise UsageError(f"image_scale: must be positive, got {config.image_scale}")
    if config.output_style not in OUTPUT_STYLES:
        raise UsageError(f"output_style: one of {', '.join(OUTPUT_STYLES)}")
    if not isinstance(config.token, str) or not config.token:
        raise UsageError("token: must be a non-empty string")
    parse_hostile(config.hostile)
    config.hold_submits = _check_holds(config.hold_submits)
    config.balance = _check_price("balance", config.balance)
    config.prices = _check_prices(config.prices)
    config.models = _check_models(config.models)
    config.catalog = check_catalog(config.catalog)
    return config


def check_catalog(entries: Any, where: str = "catalog") -> dict[str, dict[str, Any]] | None:
    """Live-shaped catalogue entries by model id: a list (or an answer of `GET /v1/models`,
    or such a mapping already); UsageError naming `where` when one has no model_id."""
    if entries is None:
        return None
    if isinstance(entries, dict) and not isinstance(entries.get("models"), list):
        entries = list(entries.values())
    from batch_runner.catalog import entries_from_answer

    found = entries_from_answer(entries)
    listed = entries if isinstance(entries, list) else entries.get("models")
    if not found or len(found) != len(listed or []):
        raise UsageError(f"{where}: expected a JSON list of catalogue entries (objects)")
    out = {}
    for i, raw in enumerate(found, 1):
        model = raw.get("model_id")
        if not isinstance(model, str) or not model:
            raise UsageError(f"{where}: entry {i} has no model_id")
        if "input_schema" in raw and not isinstance(raw["input_schema"], dict):
            raise UsageError(f"{where}: {model}: input_schema must be a JSON object")
        out[model] = raw
    return out


def read_catalog(path: str) -> dict[str, dict[str, Any]]:
    """`--catalog FILE`: the entries of a JSON file (UsageError when unreadable or odd)."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"--catalog {path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--catalog {path}: not a JSON file ({exc})") from None
    found = check_catalog(data, f"--catalog {path}")
    assert found is not None
    return found


def _check_holds(holds: Any) -> list[str]:
    if not isinstance(holds, list | tuple) or not all(isinstance(h, str) and h for h in holds):
        raise UsageError("hold_submits: expected a list of model ids or prompt fragments")
    return list(holds)


def _check_price(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e15:
        raise UsageError(f"{name}: must be a number of USD >= 0, got {value!r}")
    return float(value)


def _check_prices(prices: Any) -> dict[str, float]:
    if not isinstance(prices, dict):
        raise UsageError("prices: expected a mapping of model id to USD")
    return {str(m): _check_price(f"price of {m}", v) for m, v in prices.items()}


def _check_models(models: Any) -> dict[str, dict[str, Any]]:
    """Catalogue overrides: model id -> fields laid over (or making) that model's entry."""
    if not isinstance(models, dict):
        raise UsageError("models: expected a mapping of model id to catalogue fields")
    for model, fields in models.items():
        if not isinstance(fields, dict):
            raise UsageError(f"models: {model}: expected a mapping of catalogue fields")
        if "input_schema" in fields and not isinstance(fields["input_schema"], dict):
            raise UsageError(f"models: {model}: input_schema must be a JSON object")
        if "base_price_usd" in fields:
            _check_price(f"models: {model}: base_price_usd", fields["base_price_usd"])
        if fields.get("output_type", "IMAGE") not in OUTPUT_TYPES:  # release 2's kind
            raise UsageError(f"models: {model}: output_type must be one of {OUTPUT_TYPES}")
    return models


def apply_overrides(config: SimConfig, overrides: dict[str, Any]) -> SimConfig:
    """Apply a mapping of field overrides atomically: on any bad value nothing changes."""
    names = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise UsageError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    trial = dataclasses.replace(config, **overrides)
    try:
        validate(trial)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad setting: {exc}") from None
    for name in names:
        setattr(config, name, getattr(trial, name))
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags (CONTRACT §5) to `parser`."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=0, help="port to listen on (default 0: a free one)")
    add("--token", default="sim-token", help="the accepted API token (default sim-token)")
    add("--latency", default="0", help="seconds each job stays in progress: A or A:B (uniform)")
    add("--capacity", type=int, default=0, help="jobs in progress at once; 0 = unlimited")
    add("--fail-rate", type=float, default=0.0, help="share of generations that fail")
    add("--error-rate", type=float, default=0.0, help="share of API calls answered 500/502/503")
    add("--drop-rate", type=float, default=0.0, help="share of requests closed without answer")
    add("--lost-submit-rate", type=float, default=0.0, help="submits created, answer lost")
    add(
        "--submit-delay",
        type=float,
        default=0.0,
        help="seconds between creating a job and answering its submit (a slow API)",
    )
    add(
        "--file-delay",
        type=float,
        default=0.0,
        help="seconds before each file request is answered (a slow storage host)",
    )
    add("--rate-limit", type=float, default=None, help="API requests per second before 429")
    add("--truncate-rate", type=float, default=0.0, help="share of file downloads cut short")
    add("--url-ttl", type=float, default=None, help="file URLs expire S s after /result")
    add("--request-ttl", type=float, default=None, help="request ids forgotten S s after end")
    add("--seed", type=int, default=None, help="seed for repeatable faults")
    add("--image-scale", type=float, default=1.0, help="multiply image width/height by F")
    add("--pad-bytes", type=int, default=0, help="pad every file to at least N bytes")
    add("--output-style", default="auto", choices=OUTPUT_STYLES, help="output field to use")
    add("--hostile", default=None, help=f"hostile case[@kinds]: {', '.join(HOSTILE_CASES)}")
    add(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=USD",
        help="set one model's base_price_usd (repeatable); every other model has a made-up "
        "default price (images $0.01-0.06 per output, video $0.02-0.15 and audio "
        "$0.001-0.01 per second), NOT RunComfy's real prices",
    )
    add(
        "--catalog",
        default=None,
        metavar="FILE",
        help="serve this catalogue instead of the bundled one: a JSON list of live-shaped "
        "entries (e.g. the real catalogue's GET /v1/models?include_schema=true answer, saved)",
    )
    add(
        "--balance",
        type=float,
        default=DEFAULT_BALANCE,
        metavar="USD",
        help="starting account balance in USD (default 1000000); finished jobs are charged",
    )


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Build a validated SimConfig from parsed flags; raise UsageError on bad values."""
    config = SimConfig(
        token=args.token,
        latency=parse_latency(args.latency),
        capacity=args.capacity,
        fail_rate=args.fail_rate,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        lost_submit_rate=args.lost_submit_rate,
        submit_delay=args.submit_delay,
        file_delay=args.file_delay,
        rate_limit=args.rate_limit,
        truncate_rate=args.truncate_rate,
        url_ttl=args.url_ttl,
        request_ttl=args.request_ttl,
        seed=args.seed,
        image_scale=args.image_scale,
        pad_bytes=args.pad_bytes,
        output_style=args.output_style,
        hostile=args.hostile,
        balance=args.balance,
        prices=parse_prices(args.price),
        catalog=read_catalog(args.catalog) if getattr(args, "catalog", None) else None,
    )
    return validate(config)


def parse_prices(items: list[str]) -> dict[str, float]:
    """`--price MODEL=USD` values as a mapping; raise UsageError when one is malformed."""
    prices = {}
    for item in items or []:
        model, sep, usd = item.rpartition("=")
        try:
            prices[model] = float(usd)
        except ValueError:
            model = ""
        if not sep or not model:
            raise UsageError(f"--price: expected MODEL=USD, got {item!r}")
    return prices
