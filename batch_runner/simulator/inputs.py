"""A submit body checked against its model's input schema: the 422001 `detail` entries.

Fields the schema does not declare are refused, except those named in its `omitted_inputs`
(inputs the catalogue leaves undescribed: accepted as any JSON). Media fields are checked by
`media.media_problems`.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from batch_runner.simulator.media import Detail, OwnCheck, media_problems


def input_problems(
    validator: Draft202012Validator, body: Any, own: OwnCheck | None = None
) -> tuple[list[Detail], tuple[int, int] | None]:
    """422 `detail` entries ({"loc", "msg", "type"}) for a submit body (empty when valid), and
    the size of its first inline image (`own`: media.media_problems)."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "inputs must be a JSON object", "type": "type"}], None
    schema = validator.schema
    detail = _unknown_fields(schema, body)
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        loc: list[Any] = ["body", *error.absolute_path]
        kind = str(error.validator)
        if kind == "required":
            missing = [p for p in error.validator_value if p not in error.instance]
            loc.append(missing[0] if missing else "?")
            kind = "missing"
        detail.append({"loc": loc, "msg": error.message, "type": kind})
    media, first_size = media_problems(schema, body, own)
    return detail + media, first_size


def _unknown_fields(schema: dict[str, Any], body: dict[str, Any]) -> list[Detail]:
    props = schema.get("properties")
    if not isinstance(props, dict) or schema.get("additionalProperties") is not None:
        return []  # the schema decides for itself
    known = set(props) | set(schema.get("omitted_inputs") or [])
    allowed = ", ".join(sorted(props))
    return [
        {"loc": ["body", name], "msg": f"unknown input (allowed: {allowed})", "type": "extra"}
        for name in sorted(set(body) - known)
    ]
