"""The simulator's model catalogue, served in the live shape (CONTRACT §1, §5).

By default the bundled models as RunComfy's live catalogue shows them (`live_shape.py`), with
made-up prices; `simulate --catalog FILE` serves a given list of live-shaped entries instead
(the real catalogue saved with a token, or odd entries for tests). `--price` names a model's
price; the fields of `SimConfig.models[MODEL]` are laid over its entry (or make a new one).
Validators are compiled once per model and schema, from the schema as JSON Schema reads it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from jsonschema import Draft202012Validator

from batch_runner import catalog_shape
from batch_runner.simulator.config import SimConfig
from batch_runner.simulator.live_shape import bundled_live, display_name

# Made-up price ranges per output type: (lowest, highest) USD per price unit.
PRICE_RANGES = {"IMAGE": (0.01, 0.06), "VIDEO": (0.02, 0.15), "AUDIO": (0.001, 0.01)}
PRICE_UNITS = {"IMAGE": "output", "VIDEO": "second", "AUDIO": "second"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
ENDPOINT_KINDS = ("model", "workflow", "inference")
_NOTES = {
    "output": "simulated price: ${price} per output file",
    "second": "simulated price: ${price} per second of output (times the duration input)",
}
_CATEGORY = {"IMAGE": "text-to-image", "VIDEO": "text-to-video", "AUDIO": "text-to-audio"}

__all__ = ["SimCatalog", "default_price", "display_name", "output_type"]


def default_price(model: str, output_type: str) -> float:
    """A stable made-up price for `model`, from a hash of its id, within its type's range."""
    low, high = PRICE_RANGES.get(output_type, PRICE_RANGES["IMAGE"])
    fraction = int.from_bytes(hashlib.sha256(model.encode()).digest()[:4], "big") / 2**32
    return round(low + (high - low) * fraction, 4)


def output_type(entry: dict[str, Any]) -> str:
    """IMAGE, VIDEO or AUDIO: what a job of this entry returns (images when unknown)."""
    return catalog_shape.output_type_of(entry) or "IMAGE"


class SimCatalog:
    """The live catalogue of one simulator (reads the config on every call)."""

    def __init__(self, config: SimConfig):
        self.config = config
        self._validators: dict[str, tuple[Any, Draft202012Validator]] = {}

    def _base(self) -> dict[str, dict[str, Any]]:
        given = self.config.catalog
        return bundled_live() if given is None else given

    def entry(self, model: str) -> dict[str, Any] | None:
        """The full catalogue object of `model` (with `input_schema`), None when unknown."""
        override = self.config.models.get(model)
        base = self._base().get(model)
        if base is None and override is None:
            return None
        entry: dict[str, Any] = dict(base or {"kind": "model", "input_schema": {"type": "object"}})
        entry.setdefault("display_name", display_name(model))
        entry.update(_live_fields(override or {}))
        entry["model_id"] = model
        kind = output_type(entry)
        if self.config.catalog is None or model in self.config.prices:
            entry.setdefault("base_price_usd", default_price(model, kind))
            entry.setdefault("price_unit", PRICE_UNITS[kind])
        if model in self.config.prices and "base_price_usd" not in (override or {}):
            entry["base_price_usd"] = self.config.prices[model]
        if "pricing_note" not in entry and "base_price_usd" in entry:
            note = _NOTES.get(entry.get("price_unit") or "", _NOTES["output"])
            entry["pricing_note"] = note.replace("{price}", f"{entry['base_price_usd']:g}")
        return entry

    def ids(self) -> list[str]:
        """Every model id served: the catalogue's and those added by overrides."""
        return sorted(set(self._base()) | set(self.config.models))

    def listing(
        self,
        query: dict[str, Any],
        include_schema: bool,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        """The `GET /v1/models` answer: a page of the entries matching `search`, endpoint
        `kind` and `category`, and the total."""
        words = str(query.get("search") or "").lower().split()
        kind, category = query.get("kind"), query.get("category")
        chosen = []
        for entry in map(self.entry, self.ids()):
            if entry is None:
                continue
            hay = f"{entry['model_id']} {entry.get('display_name') or ''}".lower()
            if not all(w in hay for w in words):
                continue
            if kind and catalog_shape.endpoint_kind_of(entry) != kind:
                continue
            if category and category not in catalog_shape.categories_of(entry):
                continue
            chosen.append(entry)
        page = chosen[offset : offset + limit]
        if not include_schema:
            page = [{k: v for k, v in e.items() if k != "input_schema"} for e in page]
        return {"models": page, "total": len(chosen), "limit": limit, "offset": offset}

    def categories(self) -> list[str]:
        """Every category of the served entries (`GET /v1/models/categories`)."""
        found = set()
        for entry in map(self.entry, self.ids()):
            found.update(catalog_shape.categories_of(entry or {}))
        return sorted(found)

    def validator(self, model: str, schema: dict[str, Any]) -> Draft202012Validator:
        """The compiled validator of `schema` as JSON Schema reads it ("float": a number),
        reused while the model's schema is the same."""
        cached = self._validators.get(model)
        if cached is not None and cached[0] is schema:
            return cached[1]
        validator = Draft202012Validator(catalog_shape.normalised_schema(schema))
        self._validators[model] = (schema, validator)
        return validator


def _live_fields(override: dict[str, Any]) -> dict[str, Any]:
    """Override fields in the live shape: an `output_type` (release 2's way of saying the
    kind) becomes the category that names it."""
    fields = {k: v for k, v in override.items() if k != "output_type"}
    given = override.get("output_type")
    if given in _CATEGORY and "categories" not in override:
        fields["categories"] = [_CATEGORY[given]]
    return fields
