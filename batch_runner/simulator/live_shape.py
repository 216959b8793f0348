"""The bundled catalogue as RunComfy's live catalogue serves it (CONTRACT §1, §5).

The bundled file is a curated copy (`output_type`, normalised schemas); the simulator serves
what the live catalogue serves: `kind` and `categories` instead of `output_type`, number
inputs typed "float", a sample URL as the `default` of media fields, and a few `workflow` and
`inference` endpoints that the Model API does not run. Built once per process: the schemas
keep their identity, so the simulator compiles each validator once.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from batch_runner import catalog
from batch_runner.catalog_shape import category_kind, is_media

# where RunComfy keeps its sample inputs; a sample must never be sent as the user's input
SAMPLE_BASE = "https://playgrounds-storage-public.runcomfy.net/samples"
_SAMPLE_EXT = {"image": "png", "video": "mp4", "audio": "wav"}
# endpoints the live catalogue lists that `POST /v1/models/{id}` does not run
NOT_RUNNABLE = (
    {
        "model_id": "runcomfy/workflows/portrait-relight",
        "display_name": "Portrait Relight (workflow)",
        "kind": "workflow",
        "categories": ["image-to-image"],
        "input_schema": {
            "type": "object",
            "required": ["image_url"],
            "properties": {"image_url": {"type": "string", "format": "image_uri"}},
        },
    },
    {
        "model_id": "runcomfy/inference/sdxl-lightning/text-to-image",
        "display_name": "SDXL Lightning (inference)",
        "kind": "inference",
        "categories": ["text-to-image"],
        "input_schema": {
            "type": "object",
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string"}},
        },
    },
)


def sample_url(model: str, field: str, kind: str) -> str:
    return f"{SAMPLE_BASE}/{model.replace('/', '-')}/{field}.{_SAMPLE_EXT[kind]}"


def categories_for(model: str, output_type: str | None, schema: dict[str, Any] | None) -> list:
    """A bundled model's categories: the task its id names when that names its output kind
    ("image-to-video"), else "<input>-to-<output>" from its required media inputs."""
    kind = catalog.KINDS.get(output_type or "", "image")
    for part in reversed(model.split("/")):
        if "-to-" in part and category_kind(part) == kind:
            return [part]
    media = catalog.media_fields(schema)
    required = (schema or {}).get("required") or []
    source = next((media[name][0] for name in required if name in media), "text")
    return [f"{source}-to-{kind}"]


def livened_schema(model: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """The schema as RunComfy writes it: numbers typed "float", sample URLs on media fields."""
    out = copy.deepcopy(schema) if schema else {"type": "object"}
    media = catalog.media_fields(out)
    for name, prop in (out.get("properties") or {}).items():
        if not isinstance(prop, dict):
            continue
        if prop.get("type") == "number":
            prop["type"] = "float"
        if is_media(prop) and "default" not in prop:
            kind, many = media[name]
            url = sample_url(model, name, kind)
            prop["default"] = [url] if many else url
    # the curated copy left these structured inputs undescribed: the live one has them
    for name in out.pop("omitted_inputs", None) or []:
        structured = {"type": "array", "items": {"type": "object"}}
        out.setdefault("properties", {}).setdefault(name, structured)
    return out


@functools.cache
def bundled_live() -> dict[str, dict[str, Any]]:
    """Every bundled model (and the endpoints it cannot run) as a live entry, without price."""
    out: dict[str, dict[str, Any]] = {}
    for raw in catalog._bundled_raw():
        model = raw["model_id"]
        schema = raw.get("input_schema")
        out[model] = {
            "model_id": model,
            "display_name": display_name(model),
            "description": f"{display_name(model)} (simulated)",
            "model_url": f"https://www.runcomfy.com/models/{model}",
            "kind": "model",
            "categories": categories_for(model, raw.get("output_type"), schema),
            "input_schema": livened_schema(model, schema),
        }
    for raw in NOT_RUNNABLE:
        out[raw["model_id"]] = copy.deepcopy(raw)
    return out


def display_name(model: str) -> str:
    """A readable name from the id: "bytedance/seedream-5/lite/x" -> "Seedream 5 Lite X"."""
    parts = model.split("/")[1:] or [model]
    return " ".join(p.replace("-", " ").replace("_", " ") for p in parts).title()
