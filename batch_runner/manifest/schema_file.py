"""`--schema FILE`: one JSON Schema for every model without a known one, or a list of catalogue
entries `{"model_id", "input_schema"}`, each for its own model (CONTRACT §2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from batch_runner import catalog
from batch_runner.catalog import SchemaFile
from batch_runner.catalog_shape import normalised_schema
from batch_runner.errors import UsageError

# a mapping with none of these keywords is not taken for a JSON Schema (a typo'd file would
# otherwise validate nothing: JSON Schema ignores unknown keywords)
_SCHEMA_WORDS = {"type", "properties", "required", "$schema", "anyOf", "oneOf", "allOf", "enum"}


def read_schema_file(path: str | Path) -> SchemaFile:
    """Read and check a `--schema` file; UsageError (exit 2) naming the file when it is not
    JSON, not a JSON Schema, or a list whose entries lack `model_id` / `input_schema`."""
    name = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--schema {name}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--schema {name}: not a JSON file ({exc})") from None
    objects = catalog.entries_from_answer(data)
    if isinstance(data, list) or (objects and objects[0] is not data):
        return SchemaFile(name, entries=_entries(name, data, objects))
    if isinstance(data, dict) and "model_id" in data:
        return SchemaFile(name, entries=_entries(name, data, [data]))
    return SchemaFile(name, default=_checked(name, data, "the file"))


def _entries(name: str, data: Any, objects: list[dict]) -> dict[str, catalog.CatalogEntry]:
    if not objects or (isinstance(data, list) and len(objects) != len(data)):
        raise UsageError(
            f"--schema {name}: a list must hold catalogue entries "
            '{"model_id": ..., "input_schema": {...}}'
        )
    out = {}
    for i, raw in enumerate(objects, 1):
        entry = catalog.entry_from(raw, "schema-file")
        if entry is None:
            raise UsageError(f"--schema {name}: entry {i} has no model_id")
        _checked(name, raw.get("input_schema"), f"the input_schema of {entry.model_id}")
        out[entry.model_id] = entry
    return out


def _checked(name: str, schema: Any, what: str) -> dict[str, Any]:
    """The schema as batch_runner reads it (RunComfy's "float" is a number: CONTRACT §1),
    checked to be a JSON Schema."""
    schema = normalised_schema(schema)
    if not isinstance(schema, dict) or not _SCHEMA_WORDS & schema.keys():
        raise UsageError(
            f"--schema {name}: {what} is not a JSON Schema (expected an object with "
            '"type", "properties", "required", ...)'
        )
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        msg = f"--schema {name}: {what} is not a valid JSON Schema: {exc.message}"
        raise UsageError(msg) from None
    return schema
