"""What `validate` says about a pipeline's stages: jobs (or "up to"), estimates per stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from batch_runner.catalog import CatalogEntry, max_outputs
from batch_runner.cli.console import run_async
from batch_runner.jobs import JobSpec
from batch_runner.manifest.expand import Expansion
from batch_runner.manifest.stage_sources import files_bound
from batch_runner.manifest.stages import StagePlan
from batch_runner.money import dollars, job_price
from batch_runner.shards import Shard


def validate_stages(
    expansion: Expansion, api_base: str, token: str | None, *, debug: bool = False
) -> dict[str, dict[str, Any]]:
    """`validate --json`'s `stages` (CONTRACT §2): each stage's jobs, most jobs, estimate."""
    from batch_runner.run.pricing import estimate_specs

    specs = [spec for plan in expansion.stages or [] for spec in plan.specs]
    _, _, entries = run_async(
        estimate_specs(specs, api_base, token, expansion.entries), debug=debug
    )
    return stage_counts(expansion.stages or [], entries)


def total_cost(stages: dict[str, dict[str, Any]]) -> float | None:
    """Every stage at its most; None when any stage's price is unknown."""
    costs = [row["estimated_cost_usd"] for row in stages.values()]
    return None if None in costs else round(sum(costs), 6)


def run_children(plans: list[StagePlan] | None) -> list[JobSpec]:
    """The jobs `{run: DIR}` stages will make (known now: one per file of the other run, per
    template, shown with that file), to count and estimate them as jobs."""
    return [
        dataclasses.replace(spec, inputs={**spec.inputs, plan.field: f"{plan.run}/{name}"})
        for plan in plans or []
        if plan.run is not None and plan.field is not None
        for name in plan.files
        for spec in plan.specs
    ]


def in_shard(plans: list[StagePlan] | None, shard: Shard | None) -> list[StagePlan] | None:
    """A shard's plans: a `{run:}` stage's children are made by the shard of their parent's
    key in the other run (as a `{from:}` child is made by its parent's shard)."""
    if shard is None or plans is None:
        return plans
    return [dataclasses.replace(p, shard=(shard.k, shard.n)) if p.run else p for p in plans]


def stage_lines(stages: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, row in stages.items():
        known = row["estimated_cost_usd"] is not None
        cost = dollars(row["estimated_cost_usd"]) if known else "price unknown"
        if row["jobs"] is None:
            cost = f"up to {cost}" if known else cost
            lines.append(f"  stage {name}: up to {row['max_jobs']} jobs, {cost}")
        else:
            lines.append(f"  stage {name}: {row['jobs']} jobs, {cost}")
    return lines


def stage_counts(
    plans: list[StagePlan], entries: Mapping[str, CatalogEntry | None]
) -> dict[str, dict[str, Any]]:
    """Per stage: `jobs` (known for first stages, else None), `max_jobs` (the most a later
    stage can make: every file its parents may return) and `estimated_cost_usd` (at that most;
    None when a price is unknown)."""
    out: dict[str, dict[str, Any]] = {}
    most: dict[str, list[tuple[JobSpec, int]]] = {}  # stage -> (spec, most copies of it)
    for plan in plans:
        if plan.run is not None:  # another run's files: known, counted exactly
            made = [(s, len(plan.files)) for s in plan.specs]
        elif plan.parent is None:
            made = [(s, 1) for s in plan.specs]
        else:
            link = {"parent": plan.parent, "first": plan.first, "also": plan.also}
            files = sum(
                n * files_bound(link, _outputs(entries.get(s.model), s))
                for s, n in most[plan.parent]
            )
            made = [(s, files) for s in plan.specs]
        most[plan.name] = made
        cost: float | None = 0.0
        for spec, n in made:
            price = job_price(entries.get(spec.model), spec.inputs)
            cost = None if price is None or cost is None else round(cost + price * n, 6)
        out[plan.name] = {
            "jobs": sum(n for _, n in made) if plan.parent is None else None,
            "max_jobs": sum(n for _, n in made),
            "estimated_cost_usd": cost,
        }
    return out


def _outputs(entry: CatalogEntry | None, spec: JobSpec) -> int:
    schema = entry.input_schema if entry is not None else None
    return max_outputs(schema, spec.inputs)
