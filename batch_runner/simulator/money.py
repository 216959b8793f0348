"""What a simulated job costs (CONTRACT §6), with the same rules as the client's estimate.

A per-output model costs its price times the files a job returns (at submit, the most it may
return); a per-second one its price times the job's `duration` input (the schema default when
unset; for a model with no usable duration, NOMINAL_SECONDS).
"""

from __future__ import annotations

from typing import Any

from batch_runner import catalog

NOMINAL_SECONDS = 5.0
DIGITS = 6  # costs and balances are kept to a millionth of a dollar


def seconds(entry: dict[str, Any], body: dict[str, Any]) -> float:
    """The seconds a per-second job is charged for."""
    found = catalog.duration_seconds(entry.get("input_schema"), body)
    return NOMINAL_SECONDS if found is None else found


def cost(entry: dict[str, Any], body: dict[str, Any], n_files: int) -> float:
    """The cost of a completed job that returned `n_files` files."""
    price = float(entry.get("base_price_usd") or 0.0)
    units = n_files if entry.get("price_unit") == "output" else seconds(entry, body)
    return round(price * units, DIGITS)


def estimate(entry: dict[str, Any], body: dict[str, Any]) -> float:
    """The most a job may cost, as the balance check at submit sees it."""
    return cost(entry, body, catalog.max_outputs(entry.get("input_schema"), body))
