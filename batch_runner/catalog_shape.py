"""How a catalogue entry reads, in the shape RunComfy's live catalogue serves it (CONTRACT §1).

Live entries carry no `output_type`: the output media kind is the one their `categories` name
last ("image-to-video" -> video), as RunComfy's own catalogue script derives it; several kinds,
or none, is unknown. `kind` is the endpoint kind: only `model` endpoints are run by
`POST /v1/models/{id}` (`workflow` and `inference` ones are not). Schemas come as RunComfy
wrote them: a number may be typed "float", media fields carry a sample URL as `default`. Every
source of entries (live, cache, `--schema` file, bundled) is read through these functions, so
the rest of batch_runner sees one shape: JSON Schema types, no media defaults.

The bundled catalogue (an older curated copy) states `output_type` instead of `categories`: it
is read as the kind when no category decides it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

OUTPUT_TYPES = ("IMAGE", "VIDEO", "AUDIO")
RUNNABLE = "model"  # the endpoint kind the Model API runs
MEDIA_FORMATS = {
    "image_uri": ("image", False),
    "image_uris": ("image", True),
    "video_uri": ("video", False),
    "video_uris": ("video", True),
    "audio_uri": ("audio", False),
    "audio_uris": ("audio", True),
}
# type names seen in RunComfy's schemas that JSON Schema spells otherwise ("float": CONTRACT §1)
TYPE_ALIASES = {"float": "number", "double": "number", "int": "integer", "bool": "boolean"}
JSON_TYPES = {"string", "integer", "number", "boolean", "object", "array", "null"}
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def category_kind(category: Any) -> str | None:
    """image, video or audio: the kind a category names last ("text-to-image" -> image)."""
    if not isinstance(category, str):
        return None
    text = category.strip().lower()
    for kind in ("audio", "image", "video"):
        if text.endswith(kind) or text.endswith(kind + "s"):
            return kind
    return None


def categories_of(raw: Mapping[str, Any]) -> tuple[str, ...]:
    found = raw.get("categories")
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list):
        return ()
    return tuple(c.strip() for c in found if isinstance(c, str) and c.strip())


def output_type_of(raw: Mapping[str, Any]) -> str | None:
    """IMAGE, VIDEO or AUDIO from the entry's categories (a legacy `output_type` when they do
    not decide); None when unknown (no category naming a kind, or several kinds)."""
    kinds = {category_kind(c) for c in categories_of(raw)} - {None}
    if len(kinds) == 1:
        return str(kinds.pop()).upper()
    legacy = raw.get("output_type")
    if not kinds and isinstance(legacy, str) and legacy.upper() in OUTPUT_TYPES:
        return legacy.upper()
    return None


def endpoint_kind_of(raw: Mapping[str, Any]) -> str | None:
    """The entry's endpoint `kind` ("model", "workflow", "inference"), None when unstated."""
    kind = raw.get("kind")
    return kind.strip().lower() if isinstance(kind, str) and kind.strip() else None


def is_media(prop: Mapping[str, Any]) -> bool:
    items = prop.get("items")
    fmt = prop.get("format") or (items.get("format") if isinstance(items, dict) else None)
    return fmt in MEDIA_FORMATS


def normalised_schema(schema: Any) -> Any:
    """A copy of an input schema as JSON Schema reads it: "float" and friends as their JSON
    Schema types (an unknown type name constrains nothing rather than breaking the schema);
    a media field's sample `default` moved to `examples` (it is never sent for the user and
    never stands in for a required input); `omitted_inputs` (structured inputs a curated copy
    left undescribed) declared as inputs taking any JSON."""
    if not isinstance(schema, dict):
        return schema
    out = _types(copy.deepcopy(schema))
    props = out.get("properties")
    if isinstance(props, dict):
        for prop in props.values():
            if isinstance(prop, dict) and is_media(prop) and "default" in prop:
                sample = prop.pop("default")
                prop.setdefault("examples", [sample])
        for name in out.get("omitted_inputs") or []:
            if isinstance(name, str):
                props.setdefault(name, {"description": "structured input (any JSON)"})
    return out


def _types(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` and every schema inside it with JSON Schema's type names (in place)."""
    kind = schema.get("type")
    if isinstance(kind, str | list):
        names = [TYPE_ALIASES.get(k, k) for k in ([kind] if isinstance(kind, str) else kind)]
        known = [k for k in dict.fromkeys(names) if isinstance(k, str) and k in JSON_TYPES]
        if not known:
            del schema["type"]
        else:
            schema["type"] = known[0] if isinstance(kind, str) else known
    for sub in _subschemas(schema):
        _types(sub)
    return schema


def _subschemas(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [schema.get(key) for key in _SUBSCHEMAS]
    for key in _SUBSCHEMA_LISTS:
        found += schema.get(key) if isinstance(schema.get(key), list) else []
    for key in _SUBSCHEMA_MAPS:
        found += list(schema[key].values()) if isinstance(schema.get(key), dict) else []
    return [sub for sub in found if isinstance(sub, dict)]
