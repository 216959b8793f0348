"""`batch-runner validate`: the jobs a manifest makes, checked and priced, nothing sent."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from batch_runner.cli.console import print_json, run_async
from batch_runner.cli.formatting import format_estimate, format_preview, validate_money
from batch_runner.cli.loading import load_args
from batch_runner.cli.token import token_if_any
from batch_runner.errors import BatchRunnerError, ManifestError
from batch_runner.words import plural

if TYPE_CHECKING:
    from batch_runner.manifest.expand import Expansion


def cmd_validate(args: argparse.Namespace) -> int:
    from batch_runner.cli.stages import run_children
    from batch_runner.run.pricing import estimate_specs

    try:
        loaded = load_args(args, price=True)
    except BatchRunnerError as exc:
        if args.json:  # the object still comes, with the problems (stderr says them too)
            print_json({"valid": False, "jobs": None, "problems": _problems(exc)})
        raise
    expansion, settings = loaded.expansion, loaded.settings
    token = None if settings.offline else token_if_any(args.token_file)
    known = run_children(expansion.stages)  # {run: DIR} children: known now, priced as jobs
    if known:
        expansion = dataclasses.replace(expansion, jobs=[*expansion.jobs, *known])
    models = expansion.model_counts()
    est, prices, entries = run_async(
        estimate_specs(
            expansion.jobs, settings.api_base, token, expansion.entries, priced=loaded.priced
        ),
        debug=args.debug,
    )
    money = validate_money(est, prices, entries, settings.max_cost)
    pilot = _pilot(expansion, settings.pilot)
    # models no catalogue could confirm (offline): listed, as the API may refuse them
    unknown = [m for m in models if m in expansion.entries and expansion.entries[m] is None]
    stages = None
    if expansion.stages:  # a pipeline: every stage estimated, later ones at their most
        from batch_runner.cli.stages import stage_lines, total_cost, validate_stages

        stages = validate_stages(expansion, settings.api_base, token, debug=args.debug)
        money |= {"stages": stages, "estimated_cost_usd": total_cost(stages)}
    if args.json:
        print_json(
            {
                "jobs": len(expansion.jobs),
                "models": models,
                "estimated_cost_usd": money.pop("estimated_cost_usd", est.known_total),
                "sweeps": [{"source": str(loc), "jobs": n} for loc, n in expansion.sweep_counts],
                "warnings": expansion.warnings,
                "unknown_models": unknown,
                "valid": True,
                "problems": [],
            }
            | money
            | pilot
        )
        return 0
    names = ", ".join(f"{m}: {n}" for m, n in models.items()) if len(models) > 1 else None
    one = next(iter(models), expansion.model)
    print(f"{args.manifest}: {plural(len(expansion.jobs), 'job')}, valid ({names or one})")
    if unknown:
        print(f"  in no catalogue (inputs not checked; the API may refuse): {', '.join(unknown)}")
    for loc, n in expansion.sweep_counts:
        print(f"  sweep at {loc}: {plural(n, 'job')}")
    print(format_preview(expansion.jobs))
    print(format_estimate(est, money))
    if stages and not any(plan.flat for plan in expansion.stages or []):  # flat: one stage
        print("\n".join(["pipeline stages:", *stage_lines(stages)]))
    if pilot:
        print("\n".join(pilot["pilot"]["table"]))
        wanted = set(pilot["pilot"]["picked"])  # one pass, also over a JobStream
        picked = [job for i, job in enumerate(expansion.jobs, 1) if i in wanted]
        print(format_preview(picked, limit=50, numbers=pilot["pilot"]["picked"]))
    return 0


def _pilot(expansion: Expansion, n: int | None) -> dict[str, Any]:
    """`validate --pilot N`: the jobs a first `run --pilot N` would send (every job is new)."""
    from batch_runner.run.pilot import pick

    if n is None:
        return {}
    jobs = expansion.jobs if isinstance(expansion.jobs, list) else list(expansion.jobs)
    chosen = pick(jobs, n, expansion.seed)  # a pick weighs every job: a stream is held here
    picked = [i + 1 for i in chosen.picked]
    return {"pilot": {"jobs": len(picked), "picked": picked, "table": chosen.table()}}


def _problems(exc: BatchRunnerError) -> list[dict[str, Any]]:
    """`validate --json`'s problems: each with its file, line, field (and model) when known."""
    if isinstance(exc, ManifestError):  # `stage` only in pipelines
        rows = [dataclasses.asdict(p) for p in exc.problems]
        return [{k: v for k, v in r.items() if k != "stage" or v is not None} for r in rows]
    return [{"file": None, "line": None, "field": None, "message": str(exc), "model": None}]
