"""The model catalogue: which models exist, their input schemas, output types and prices.

Three sources, in order of trust (CONTRACT §1, §2): a `--schema` file of the user's, the live
catalogue of the API the run talks to (fetched by the caller, cached here for a day per API base
and model, with an index of every id the whole listing named), and the catalogue bundled with
the package (`batch_runner/data/models.json`, 121 models). Every entry, whatever its source, is
read by `entry_from` in the live shape (`catalog_shape.py`). This module does no network I/O:
the live entries are handed in.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from batch_runner import catalog_shape as shape
from batch_runner.catalog_shape import MEDIA_FORMATS

KINDS = {"IMAGE": "image", "VIDEO": "video", "AUDIO": "audio"}
CACHE_TTL = 24 * 3600.0  # the live catalogue is asked at most daily per model
INDEX_FILE = "index.json"  # every id of the last whole listing, with its endpoint kind


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One model as the catalogue describes it; prices are None where unknown (never 0)."""

    model_id: str
    output_type: str | None = None  # IMAGE, VIDEO, AUDIO (derived from `categories`)
    input_schema: dict[str, Any] | None = None
    base_price_usd: float | None = None
    price_unit: str | None = None  # "output" or "second"
    pricing_note: str | None = None
    display_name: str | None = None
    source: str = "bundled"  # bundled, live, cache, schema-file
    categories: tuple[str, ...] = ()
    endpoint_kind: str | None = None  # model, workflow, inference (None: not stated)

    @property
    def kind(self) -> str | None:
        """image, video or audio (from `categories`), None when the catalogue does not say."""
        return KINDS.get((self.output_type or "").upper())

    @property
    def runnable(self) -> bool:
        """Whether `POST /v1/models/{id}` runs it: a `kind: model` endpoint (or kind unstated)."""
        return self.endpoint_kind in (None, shape.RUNNABLE)

    @property
    def required(self) -> list[str]:
        return list((self.input_schema or {}).get("required") or [])

    def to_json(self, *, schema: bool = False) -> dict[str, Any]:
        """The `models --json` object of this model (CONTRACT §2)."""
        out: dict[str, Any] = {
            "model_id": self.model_id,
            "output_type": self.output_type,
            "required": self.required,
        }
        for name in ("base_price_usd", "price_unit", "pricing_note", "display_name"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.categories:
            out["categories"] = list(self.categories)
        if self.endpoint_kind is not None:
            out["kind"] = self.endpoint_kind
        if schema:
            out["input_schema"] = self.input_schema
        return out


@dataclasses.dataclass(frozen=True)
class SchemaFile:
    """What a `--schema` file gives (manifest/schema_file.py reads it): a schema for models
    without a known one, and/or entries each for its own model."""

    path: str
    default: dict[str, Any] | None = None
    entries: dict[str, CatalogEntry] = dataclasses.field(default_factory=dict)

    def fallback(self, model: str) -> CatalogEntry | None:
        if self.default is None:
            return None
        return CatalogEntry(model, input_schema=self.default, source="schema-file")


def entry_from(data: Mapping[str, Any], source: str) -> CatalogEntry | None:
    """A catalogue entry from one object of the API's catalogue answer (or the cache, a
    `--schema` file, the bundled file): the one place an entry is read (CONTRACT §1)."""
    model_id = data.get("model_id") or data.get("id") or data.get("model")
    if not isinstance(model_id, str) or not model_id:
        return None
    schema = data.get("input_schema")
    price = data.get("base_price_usd")
    return CatalogEntry(
        model_id=model_id,
        output_type=shape.output_type_of(data),
        input_schema=shape.normalised_schema(schema) if isinstance(schema, dict) else None,
        categories=shape.categories_of(data),
        endpoint_kind=shape.endpoint_kind_of(data),
        base_price_usd=float(price) if _is_price(price) else None,
        price_unit=_str_or_none(data.get("price_unit")),
        pricing_note=_str_or_none(data.get("pricing_note")),
        display_name=_str_or_none(data.get("display_name")),
        source=source,
    )


def entries_from_answer(answer: Any) -> list[dict[str, Any]]:
    """The list of model objects in a catalogue answer whose envelope is not documented:
    a bare list, or the first list under `models`, `data`, `items` or `results` (CONTRACT §1)."""
    if isinstance(answer, list):
        return [m for m in answer if isinstance(m, dict)]
    if isinstance(answer, dict):
        for key in ("models", "data", "items", "results"):
            if isinstance(answer.get(key), list):
                return [m for m in answer[key] if isinstance(m, dict)]
        if "model_id" in answer:  # GET /v1/models/{id} answers one object
            return [answer]
    return []


# beside this module, as package data (not through importlib.resources: its import, tempfile
# and zipfile included, cost every start-up ~6 ms)
BUNDLED_FILE = Path(__file__).parent / "data" / "models.json"


@functools.cache
def _bundled_raw() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(BUNDLED_FILE.read_text("utf-8")))


def bundled() -> dict[str, CatalogEntry]:
    """The catalogue shipped with the package, by model id (121 models, no prices)."""
    return _bundled_index()


@functools.cache
def _bundled_index() -> dict[str, CatalogEntry]:
    entries = (bundled_entry(model) for model in _bundled_by_id())
    return {entry.model_id: entry for entry in entries if entry is not None}


@functools.cache
def _bundled_by_id() -> dict[str, dict[str, Any]]:
    ids = ((d.get("model_id") or d.get("id") or d.get("model"), d) for d in _bundled_raw())
    return {model: data for model, data in ids if isinstance(model, str) and model}


@functools.cache
def bundled_entry(model: str) -> CatalogEntry | None:
    """The bundled entry of `model` (None: not bundled), read alone: a run reads the one or
    two models it uses, not all 121 (their schemas normalised cost ~5 ms per start)."""
    data = _bundled_by_id().get(model)
    return entry_from(data, "bundled") if data is not None else None


def bundled_schema(model: str) -> dict[str, Any] | None:
    """A fresh copy of the bundled input schema of `model`, None for a model not bundled."""
    entry = bundled_entry(model)
    if entry is None or entry.input_schema is None:
        return None
    return json.loads(json.dumps(entry.input_schema))


def media_fields(schema: Mapping[str, Any] | None) -> dict[str, tuple[str, bool]]:
    """Input fields taking media: name -> (image|video|audio, takes a list)."""
    props = (schema or {}).get("properties") or {}
    out = {}
    for name, prop in props.items():
        if isinstance(prop, dict):
            fmt = prop.get("format") or (prop.get("items") or {}).get("format")
            if fmt in MEDIA_FORMATS:
                out[name] = MEDIA_FORMATS[fmt]
    return out


def search(
    entries: Iterable[CatalogEntry],
    text: str | None = None,
    kind: str | None = None,
    category: str | None = None,
) -> list[CatalogEntry]:
    """Entries whose id or name contains every word of `text` (any case), of media `kind`
    (derived from the categories), in `category`, sorted."""
    words = (text or "").lower().split()
    found = []
    for e in entries:
        hay = f"{e.model_id} {e.display_name or ''}".lower()
        if not all(w in hay for w in words) or (kind is not None and e.kind != kind):
            continue
        if category is None or in_category(e, category):
            found.append(e)
    return sorted(found, key=lambda e: e.model_id)


def in_category(entry: CatalogEntry, category: str) -> bool:
    """Whether the entry is in `category`; an entry without categories (the bundled ones) is
    in the one its id names (RunComfy ids end in their task: ".../image-to-video")."""
    wanted = category.strip().lower()
    named = entry.categories or tuple(entry.model_id.split("/")[1:])
    return wanted in (c.lower() for c in named)


def suggestions(model: str, ids: Iterable[str], n: int = 3) -> list[str]:
    """The known ids nearest to a mistyped one (a did-you-mean), best first."""
    import difflib

    return difflib.get_close_matches(model, list(ids), n=n, cutoff=0.5)


def unknown_model_text(model: str, ids: Iterable[str]) -> str:
    """The problem of a model the catalogue does not list, with a did-you-mean."""
    guesses = suggestions(model, ids)
    hint = f" (did you mean {' or '.join(repr(g) for g in guesses)}?)" if guesses else ""
    return f"unknown model{hint}; `batch-runner models SEARCH` lists the models"


def not_runnable_text(endpoint_kind: str) -> str:
    return (
        f"a {endpoint_kind} endpoint, not a model: the Model API does not run it "
        "(`batch-runner models` lists the models it runs)"
    )


# --- the cache of live entries (one JSON file per API base and model) -------------------------


def cache_dir(api_base: str) -> Path:
    """`$XDG_CACHE_HOME/batch_runner/catalog/<hash of the API base>/` (default ~/.cache)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(api_base.rstrip("/").encode()).hexdigest()[:16]
    return Path(root) / "batch_runner" / "catalog" / digest


def _cache_file(api_base: str, model: str) -> Path:
    return cache_dir(api_base) / (hashlib.sha256(model.encode()).hexdigest()[:24] + ".json")


def read_cached(
    api_base: str, model: str, *, max_age: float | None = CACHE_TTL
) -> CatalogEntry | None:
    """The cached live entry of `model`, None when absent, unreadable or older than `max_age`."""
    try:
        data = json.loads(_cache_file(api_base, model).read_text(encoding="utf-8"))
        fetched = float(data["fetched_at"])
        entry = entry_from(data["entry"], "cache")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry is None or entry.model_id != model:
        return None
    if max_age is not None and time.time() - fetched > max_age:
        return None
    return entry


def write_cached(api_base: str, raw: Mapping[str, Any]) -> None:
    """Keep one live catalogue object; a cache that cannot be written is only a lost speed-up."""
    model = raw.get("model_id")
    if not isinstance(model, str):
        return
    _write(_cache_file(api_base, model), {"fetched_at": time.time(), "entry": dict(raw)})


def write_index(api_base: str, raws: Iterable[Mapping[str, Any]]) -> None:
    """Keep the ids of a whole live listing (with their endpoint kinds): what the catalogue
    does not list is an unknown model while the index is fresh."""
    models = {}
    for raw in raws:
        if isinstance(raw.get("model_id"), str):
            models[raw["model_id"]] = shape.endpoint_kind_of(raw)
    _write(cache_dir(api_base) / INDEX_FILE, {"fetched_at": time.time(), "models": models})


def read_index(api_base: str, *, max_age: float | None = CACHE_TTL) -> dict[str, str | None] | None:
    """Model id -> endpoint kind of the last whole listing, None when absent or too old."""
    try:
        data = json.loads((cache_dir(api_base) / INDEX_FILE).read_text(encoding="utf-8"))
        fetched, models = float(data["fetched_at"]), dict(data["models"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if max_age is not None and time.time() - fetched > max_age:
        return None
    return models


def known_ids(api_base: str | None) -> list[str]:
    """Every model id batch_runner has heard of for this API (bundled, and the last listing):
    the candidates of a did-you-mean."""
    ids = dict.fromkeys(bundled())
    if api_base is not None:
        ids.update(dict.fromkeys(read_index(api_base, max_age=None) or {}))
    return list(ids)


def _write(path: Path, data: Any) -> None:
    """Write a cache file whole (a temporary name, then renamed); a cache that cannot be
    written is only a lost speed-up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.part")
        tmp.write_text(json.dumps(data), "utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_price(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


# --- what a job will be charged for (CONTRACT §6); shared by the estimate and the simulator ---


def duration_seconds(schema: Mapping[str, Any] | None, inputs: Mapping[str, Any]) -> float | None:
    """Seconds a per-second job is priced at: its `duration` input, else the schema default;
    a non-number such as "auto" counts as the largest number the schema allows (an upper
    bound); None when the schema says nothing usable (no `duration` field)."""
    prop = ((schema or {}).get("properties") or {}).get("duration")
    if not isinstance(prop, dict):
        return None
    for value in (inputs.get("duration"), prop.get("default")):
        seconds = number_or_none(value)
        if seconds is not None:
            return seconds
    bounds = [number_or_none(v) for v in [*(prop.get("enum") or []), prop.get("maximum")]]
    known = [b for b in bounds if b is not None]
    return max(known) if known else None


def max_outputs(schema: Mapping[str, Any] | None, inputs: Mapping[str, Any]) -> int:
    """Most files a per-output job may return: `max_images` when `sequential_image_generation`
    is "auto" (or the model has `max_images` without that switch), `num_images`, else 1."""
    props = (schema or {}).get("properties") or {}
    if "sequential_image_generation" in props:
        switch = props["sequential_image_generation"]
        default = switch.get("default") if isinstance(switch, dict) else None
        if inputs.get("sequential_image_generation", default) != "auto":
            return 1
        return _count(props, inputs, "max_images")
    for name in ("num_images", "max_images"):
        if name in props:
            return _count(props, inputs, name)
    return 1


def _count(props: Mapping[str, Any], inputs: Mapping[str, Any], name: str) -> int:
    prop = props.get(name) if isinstance(props.get(name), dict) else {}
    value = number_or_none(inputs.get(name, prop.get("default")))
    return max(1, int(value)) if value is not None else 1


def number_or_none(value: Any) -> float | None:
    """A non-negative number from an int, a float or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None
