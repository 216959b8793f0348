"""The simulator's model catalogue: the bundled 121 models with made-up prices, live overrides.

An entry is the bundled one (batch_runner.catalog), priced by `default_price` unless `--price`
names the model, with the fields of `SimConfig.models[MODEL]` laid over it (which may also add
a model the bundle lacks). Validators are compiled once per model and schema.
"""

from __future__ import annotations

import hashlib
from typing import Any

from jsonschema import Draft202012Validator

from batch_runner import catalog
from batch_runner.simulator.config import SimConfig

# Made-up price ranges per output type: (lowest, highest) USD per price unit.
PRICE_RANGES = {"IMAGE": (0.01, 0.06), "VIDEO": (0.02, 0.15), "AUDIO": (0.001, 0.01)}
PRICE_UNITS = {"IMAGE": "output", "VIDEO": "second", "AUDIO": "second"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_NOTES = {
    "output": "simulated price: ${price} per output file",
    "second": "simulated price: ${price} per second of output (times the duration input)",
}


def default_price(model: str, output_type: str) -> float:
    """A stable made-up price for `model`, from a hash of its id, within its type's range."""
    low, high = PRICE_RANGES.get(output_type, PRICE_RANGES["IMAGE"])
    fraction = int.from_bytes(hashlib.sha256(model.encode()).digest()[:4], "big") / 2**32
    return round(low + (high - low) * fraction, 4)


def display_name(model: str) -> str:
    """A readable name from the id: "bytedance/seedream-5/lite/x" -> "Seedream 5 Lite X"."""
    parts = model.split("/")[1:] or [model]
    return " ".join(p.replace("-", " ").replace("_", " ") for p in parts).title()


class SimCatalog:
    """The live catalogue of one simulator (reads the config on every call)."""

    def __init__(self, config: SimConfig):
        self.config = config
        self._validators: dict[str, tuple[Any, Draft202012Validator]] = {}

    def entry(self, model: str) -> dict[str, Any] | None:
        """The full catalogue object of `model` (with `input_schema`), None when unknown."""
        override = self.config.models.get(model)
        bundled = catalog.bundled().get(model)
        if bundled is None and override is None:
            return None
        output_type = (override or {}).get("output_type") or (
            bundled.output_type if bundled else None
        )
        output_type = output_type if output_type in PRICE_UNITS else "IMAGE"
        entry: dict[str, Any] = {
            "model_id": model,
            "display_name": display_name(model),
            "output_type": output_type,
            "base_price_usd": self.config.prices.get(model, default_price(model, output_type)),
            "price_unit": PRICE_UNITS[output_type],
            "input_schema": (bundled.input_schema if bundled else None) or {"type": "object"},
        }
        entry.update(override or {})
        entry["model_id"] = model
        if "pricing_note" not in (override or {}):
            note = _NOTES.get(entry["price_unit"], _NOTES["output"])
            entry["pricing_note"] = note.replace("{price}", f"{entry['base_price_usd']:g}")
        return entry

    def ids(self) -> list[str]:
        """Every model id served: the bundled ones and those added by overrides."""
        return sorted(set(catalog.bundled()) | set(self.config.models))

    def listing(
        self, search: str | None, kind: str | None, include_schema: bool, limit: int, offset: int
    ) -> dict[str, Any]:
        """The `GET /v1/models` answer: a page of matching entries and the total."""
        entries = [e for e in map(self.entry, self.ids()) if e is not None]
        found = catalog.search((_as_entry(e) for e in entries), search, kind)
        wanted = {e.model_id for e in found}
        chosen = [e for e in entries if e["model_id"] in wanted]
        page = chosen[offset : offset + limit]
        if not include_schema:
            page = [{k: v for k, v in e.items() if k != "input_schema"} for e in page]
        return {"models": page, "total": len(chosen), "limit": limit, "offset": offset}

    def validator(self, model: str, schema: dict[str, Any]) -> Draft202012Validator:
        """The compiled validator of `schema`, reused while the model's schema is the same."""
        cached = self._validators.get(model)
        if cached is not None and cached[0] is schema:
            return cached[1]
        validator = Draft202012Validator(schema)
        self._validators[model] = (schema, validator)
        return validator


def _as_entry(data: dict[str, Any]) -> catalog.CatalogEntry:
    entry = catalog.entry_from(data, "live")
    assert entry is not None  # every served object has a model_id
    return entry
