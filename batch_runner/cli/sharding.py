"""The command line's side of shards: which shard this process is, its run directory and jobs,
its share of a total budget; `merge`; `status` over a folder of shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from batch_runner.cli.console import print_json, say
from batch_runner.cli.formatting import format_summary
from batch_runner.errors import UsageError
from batch_runner.jobs import JobSpec
from batch_runner.settings import RunSettings
from batch_runner.shards import (
    Shard,
    check_run_dir,
    claim,
    parse_shard,
    shard_dirs,
    shard_from_env,
    split_budget,
)
from batch_runner.store.state import STATE_FILE


def add_shard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard", metavar="K/N", help="run only shard K of N (in RUN_DIR/shard-K-of-N/)"
    )
    p.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="run one of N shards, K from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID",
    )
    p.add_argument(
        "--max-cost-total",
        type=float,
        metavar="USD",
        help="a budget for all shards together: each shard gets 1/N of it as --max-cost",
    )


def which_shard(args: argparse.Namespace) -> Shard | None:
    if args.shard is not None and args.shards is not None:
        raise UsageError("give --shard K/N or --shards N, not both")
    if args.shard is not None:
        return parse_shard(args.shard)
    if args.shards is not None:
        return shard_from_env(args.shards)
    if args.max_cost_total is not None:
        raise UsageError("--max-cost-total splits a budget across shards: add --shards N")
    return None


def shard_run(
    args: argparse.Namespace, run_dir: Path, specs: list[JobSpec], settings: RunSettings
) -> tuple[Path, list[JobSpec]]:
    """This process's run directory and jobs (all of them without sharding)."""
    shard = which_shard(args)
    if shard is None:
        check_run_dir(run_dir, None, STATE_FILE)
        return run_dir, specs
    if args.max_cost_total is not None:
        _split_budget(args, settings, shard)
    folder = claim(run_dir, shard, STATE_FILE)
    mine = [spec for spec in specs if shard.holds(spec.key)]
    say(f"shard {shard.k} of {shard.n}: {len(mine)} of the {len(specs)} jobs")
    return folder, mine


def _split_budget(args: argparse.Namespace, settings: RunSettings, shard: Shard) -> None:
    if getattr(args, "max_cost", None) is not None:
        raise UsageError("give --max-cost (per shard) or --max-cost-total (all shards), not both")
    if args.max_cost_total < 0:
        raise UsageError("--max-cost-total must be 0 or more")
    share = split_budget(args.max_cost_total, shard.n)
    settings.apply({"max_cost": share}, origin="--max-cost-total")
    say(f"budget: ${share:.6g} for this shard (--max-cost-total {args.max_cost_total:g} / N)")


def is_shard_folder(run_dir: Path) -> bool:
    """A folder of shards (and not itself a run directory)."""
    return not (run_dir / STATE_FILE).exists() and bool(shard_dirs(run_dir))


def refuse_shard_folder(run_dir: Path, command: str) -> None:
    """`report`/`export` read one run directory; a folder of shards has `merge`."""
    if is_shard_folder(run_dir):
        raise UsageError(
            f"{run_dir} holds shards, not one run: `batch-runner merge {run_dir}` writes one "
            f"metadata.jsonl and report.html over them (or {command} a shard-K-of-N folder)"
        )


def cmd_merge(args: argparse.Namespace) -> int:
    from batch_runner.report.merge import merge

    try:
        result = merge(args.run_dir)
    except OSError as exc:
        raise UsageError(f"{args.run_dir}: cannot write merged files ({exc.strerror})") from None
    if result.waiting:
        say(f"not started yet (no state file): {', '.join(result.waiting)}")
    print(
        f"{result.metadata} ({result.lines} files from {result.shards} shards, "
        f"{result.jobs} jobs); {result.report}"
    )
    return 0


def status_of_shards(args: argparse.Namespace) -> int:
    from batch_runner.report.shard_status import shards_summary

    summary = shards_summary(args.run_dir)
    if args.json:
        print_json(summary)
        return 0
    print(format_summary(summary))
    print("shards:")
    for name, line in summary["shards"].items():
        idle = line.get("idle_seconds")
        since = f", last activity {idle:.0f} s ago" if idle is not None else ""
        print(f"  {name}: {line['state']}, {line['jobs']} jobs, {line['files']} files{since}")
    return 0
