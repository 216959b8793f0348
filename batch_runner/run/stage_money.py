"""A pipeline's money before the first submit (CONTRACT §3, §6): what each stage still costs,
the later stages at their most, so `run` prints every stage's estimate ("up to" where children
are still to be made, as `validate` does) and the balance check covers the whole chain.

A stage's jobs still to come are those to send now plus, for a later stage, one per file its
parent jobs still to finish (to send, or at the API) may return (their most outputs; one with
`first: true`; times the axes of its other `{from:}` fields), times its templates. Children
already made are jobs like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batch_runner.catalog import CatalogEntry, max_outputs
from batch_runner.jobs import JobRecord
from batch_runner.manifest.stage_sources import files_bound
from batch_runner.money import dollars, job_price, usd
from batch_runner.words import plural


@dataclass
class StageRow:
    """One stage's jobs to send now, the most still to be made, and their most cost."""

    jobs: int = 0
    more: int = 0
    cost: float | None = 0.0
    more_cost: float = 0.0  # of the `more` jobs whose price is known
    more_unknown: int = 0  # of the `more` jobs whose price is unknown

    def add(self, price: float | None, n: int = 1) -> None:
        self.cost = None if price is None or self.cost is None else usd(self.cost + price * n)

    def line(self, name: str) -> str:
        cost = "price unknown" if self.cost is None else dollars(self.cost)
        if not self.more:
            return f"  stage {name}: {plural(self.jobs, 'job')} to send, {cost}"
        count = (
            f"{plural(self.jobs, 'job')} and up to {self.more} more"
            if self.jobs
            else f"up to {plural(self.more, 'job')}"
        )
        cost = cost if self.cost is None else f"up to {cost}"
        return f"  stage {name}: {count}, {cost}"


@dataclass
class StageForecast:
    """Filled job by job while `prepare` reads the state, then `finish`ed with the entries."""

    plans: list[dict[str, Any]]
    # stage -> (model, inputs, how many) of the jobs that will finish: their children to come
    finishing: dict[str, list[tuple[str, dict[str, Any], int]]] = field(default_factory=dict)
    rows: dict[str, StageRow] = field(default_factory=dict)

    @classmethod
    def of(cls, store: Any) -> StageForecast | None:
        """The forecast of a run directory whose manifest has later stages, else None."""
        plans = store.stage_plans() if store._has_lineage() else []
        return cls(plans) if any(p.get("parent") for p in plans) else None

    def models(self) -> set[str]:
        return {t["model"] for p in self.plans for t in p.get("templates", [])}

    def add(self, job: JobRecord, price: float | None, *, to_send: bool, at_api: bool) -> None:
        if job.stage is None:
            return
        if to_send:
            row = self.rows.setdefault(job.stage, StageRow())
            row.jobs += 1
            row.add(price)
        if to_send or at_api:
            self.finishing.setdefault(job.stage, []).append((job.model, job.inputs, 1))

    def finish(self, entries: Mapping[str, CatalogEntry | None]) -> dict[str, StageRow]:
        """Every stage's row, in the order written (later stages' children added)."""
        out: dict[str, StageRow] = {}
        for plan in self.plans:
            row = out[plan["name"]] = self.rows.get(plan["name"], StageRow())
            if not plan.get("parent"):
                continue
            coming = self.finishing.setdefault(plan["name"], [])
            for model, inputs, n in self.finishing.get(plan["parent"], []):
                files = files_bound(plan, _outputs(entries.get(model), inputs))
                for template in plan.get("templates", []):
                    price = job_price(entries.get(template["model"]), template["inputs"])
                    row.more += n * files
                    row.add(price, n * files)
                    if price is None:
                        row.more_unknown += n * files
                    else:
                        row.more_cost = usd(row.more_cost + price * n * files)
                    coming.append((template["model"], template["inputs"], n * files))
        return out


def later_cost(rows: Mapping[str, StageRow]) -> tuple[float, int, int]:
    """The children still to be made: their most known cost, how many, how many unpriced."""
    return (
        usd(sum(r.more_cost for r in rows.values())),
        sum(r.more for r in rows.values()),
        sum(r.more_unknown for r in rows.values()),
    )


def _outputs(entry: CatalogEntry | None, inputs: Mapping[str, Any]) -> int:
    return max_outputs(entry.input_schema if entry is not None else None, inputs)
