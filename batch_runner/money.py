"""What jobs cost (CONTRACT §6): one job's price, and the estimate over many jobs.

A job's price is its model's `base_price_usd` times its units: the files it may return for a
per-`output` model (an upper bound), the seconds of its `duration` for a per-`second` one.
An unknown price (no price in the catalogue, an unknown unit, no usable duration) is None and
is never counted as 0. The simulator charges by the same `catalog` functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batch_runner.catalog import CatalogEntry, duration_seconds, max_outputs
from batch_runner.words import plural

DIGITS = 6  # money is kept to a millionth of a dollar (sums of floats drift otherwise)


def job_price(entry: CatalogEntry | None, inputs: Mapping[str, Any]) -> float | None:
    """The most a job with these inputs may cost, None when its price is unknown."""
    if entry is None or entry.base_price_usd is None:
        return None
    if entry.price_unit == "output":
        units: float | None = max_outputs(entry.input_schema, inputs)
    elif entry.price_unit == "second":
        units = duration_seconds(entry.input_schema, inputs)
    else:
        units = None
    return None if units is None else usd(entry.base_price_usd * units)


def usd(value: float) -> float:
    return round(value, DIGITS)


def dollars(value: float | None) -> str:
    """$1.23 (cents shown; smaller amounts with the digits they need), "unknown" for None."""
    if value is None:
        return "unknown"
    if abs(value - round(value, 2)) > 1e-9:  # below a cent: the digits it needs
        return f"${value:.6f}".rstrip("0")
    return f"${value:.2f}"


@dataclass
class Estimate:
    """The estimated cost of some jobs: known prices summed, per model, unknown ones counted."""

    total: float = 0.0
    jobs: int = 0
    unknown: int = 0  # jobs whose price is unknown
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, model: str, price: float | None) -> None:
        row = self.per_model.setdefault(model, {"jobs": 0, "estimated_cost_usd": 0.0})
        row["jobs"] += 1
        self.jobs += 1
        if price is None:
            self.unknown += 1
            row["estimated_cost_usd"] = None
            row["unknown"] = row.get("unknown", 0) + 1
            return
        self.total = usd(self.total + price)
        if row["estimated_cost_usd"] is not None:
            row["estimated_cost_usd"] = usd(row["estimated_cost_usd"] + price)

    @property
    def known_total(self) -> float | None:
        """The estimate when every price is known, else None (a partial sum is no estimate)."""
        return None if self.unknown else self.total

    def text(self, what: str | None = None) -> str:
        """One line: "estimated cost of 12 jobs: $0.36 (unknown for 2 jobs: ...)"; `what`
        names the jobs counted instead (e.g. "the 12 jobs left to send")."""
        line = f"estimated cost of {what or plural(self.jobs, 'job')}: "
        if self.unknown == self.jobs:
            return line + "unknown (no price in the catalogue)"
        line += dollars(self.total)
        if self.unknown:
            line += f" (unknown for {plural(self.unknown, 'job')}: no price in the catalogue)"
        return line

    def model_lines(self) -> list[str]:
        if len(self.per_model) < 2:
            return []
        lines = []
        for model, row in sorted(self.per_model.items()):
            cost = row["estimated_cost_usd"]
            lines.append(f"  {model}: {plural(row['jobs'], 'job')}, {dollars(cost)}")
        return lines


def estimate(
    jobs: Iterable[tuple[str, Mapping[str, Any]]], entries: Mapping[str, CatalogEntry | None]
) -> tuple[Estimate, list[float | None]]:
    """The estimate of (model, inputs) jobs and each job's price, in order."""
    priced = Priced(entries)
    for model, inputs in jobs:
        priced.add(model, inputs)
    return priced.estimate, priced.prices


class Priced:
    """`estimate` one job at a time, as another pass makes them (`validate` prices the jobs
    while it checks them: no pass of their own over a streamed manifest)."""

    def __init__(self, entries: Mapping[str, CatalogEntry | None]):
        self.entries = entries
        self.estimate = Estimate()
        self.prices: list[float | None] = []

    def add(self, model: str, inputs: Mapping[str, Any]) -> None:
        price = job_price(self.entries.get(model), inputs)
        self.estimate.add(model, price)
        self.prices.append(price)


def fitting(prices: Iterable[float | None], budget: float) -> tuple[int, float]:
    """How many jobs, taken in order, fit in `budget` (a job of unknown price never fits, and
    later cheaper jobs still may), and what they cost together."""
    n, spent = 0, 0.0
    for price in prices:
        if price is not None and usd(spent + price) <= budget:
            n += 1
            spent = usd(spent + price)
    return n, spent


def archive_text(saved: Mapping[str, Any]) -> str:
    """ "12 from the archive, $0.36 not spent" of a `from_archive` object (store/archived.py):
    recorded costs, "about" where estimates stand in for some, and those of unknown cost."""
    text = dollars(saved["not_spent_usd"])
    notes = []
    if saved.get("estimated"):
        text = "about " + text
        notes.append(f"estimates for {saved['estimated']}")
    if saved.get("unknown"):
        notes.append(f"{saved['unknown']} of unknown cost")
    more = f" ({', '.join(notes)})" if notes else ""
    return f"{saved['jobs']} from the archive, {text} not spent{more}"
