"""The command line's side of shards: which shard this process is, its run directory and jobs,
its share of a total budget; `merge`; `status` over a folder of shards."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_runner.cli.console import print_json, say
from batch_runner.cli.formatting import format_summary
from batch_runner.errors import UsageError
from batch_runner.jobs import JobSpec
from batch_runner.manifest.stream import JobStream, select
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

# the run options of shards: flags of `run`, also settable in the manifest's `options:`
SHARD_KEYS = ("shard", "shards", "max_cost_total")


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


@dataclass(frozen=True)
class ShardOptions:
    """Which shard this process runs, and the budget of all shards: from the command line or
    the manifest's `options:` (the command line wins), each value checked where it was given."""

    shard: Shard | None = None  # --shard K/N
    shards: int | None = None  # --shards N: K comes from the environment when the run starts
    max_cost_total: float | None = None
    origin: dict[str, str] = field(default_factory=dict)  # option -> where given (for errors)

    def which(self) -> Shard | None:
        """This process's shard, None without sharding."""
        if self.shard is not None:
            return self.shard
        if self.shards is not None:
            return shard_from_env(self.shards, origin=self.origin["shards"])
        if self.max_cost_total is not None:
            raise UsageError(
                f"{self.origin['max_cost_total']} splits a budget across shards: add --shards N "
                "(or shards: N in the manifest's options:)"
            )
        return None


def shard_options(
    args: argparse.Namespace, manifest: Mapping[str, Any], origin: str
) -> ShardOptions:
    """The shard options of a run: its flags over the manifest's `options:` (`manifest`, all
    of them; `origin` names them in errors). A shard chosen on the command line (--shard or
    --shards) overrides the manifest's choice; a budget given there (--max-cost or
    --max-cost-total) its `max_cost_total`."""
    options = {str(k).replace("-", "_"): v for k, v in manifest.items()}
    options = {k: v for k, v in options.items() if v is not None}
    flags = {k: v for k in SHARD_KEYS if (v := getattr(args, k, None)) is not None}
    if "shard" in flags and "shards" in flags:
        raise UsageError("give --shard K/N or --shards N, not both")
    if "shard" in options and "shards" in options:
        raise UsageError(f"{origin}: give shard or shards, not both")
    dropped = bool(getattr(args, "no_max_cost", False))  # --no-max-cost: no budget at all
    flag_budget = getattr(args, "max_cost", None) is not None or dropped
    if "max_cost_total" in flags and dropped:
        raise UsageError("give --no-max-cost or --max-cost-total, not both")
    if "max_cost_total" in flags and flag_budget:
        raise UsageError("give --max-cost (per shard) or --max-cost-total (all shards), not both")
    if "max_cost_total" in options and "max_cost" in options:
        raise UsageError(
            f"{origin}: give max_cost (per shard) or max_cost_total (all shards), not both"
        )
    overridden = {
        "shard": "shard" in flags or "shards" in flags,
        "shards": "shard" in flags or "shards" in flags,
        "max_cost_total": "max_cost_total" in flags or flag_budget,
    }
    given: dict[str, tuple[Any, str]] = {}  # option -> (value, where it was given)
    for key in SHARD_KEYS:
        if key in flags:
            given[key] = (flags[key], "--" + key.replace("_", "-"))
        elif key in options and not overridden[key]:
            given[key] = (options[key], f"{origin}: {key}")
    return _checked(given)


def _checked(given: dict[str, tuple[Any, str]]) -> ShardOptions:
    origin = {key: where for key, (_, where) in given.items()}
    shard = shards = total = None
    if "shard" in given:
        value, where = given["shard"]
        shard = parse_shard(str(value), where)
    if "shards" in given:
        value, where = given["shards"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{where} must be a whole number of shards, at least 1, got {value!r}")
        shards = value
    if "max_cost_total" in given:
        value, where = given["max_cost_total"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{where} must be a number of US dollars, got {value!r}")
        if not math.isfinite(value):  # nan passes every comparison, inf is no budget
            raise UsageError(f"{where} must be a finite number of US dollars, got {value!r}")
        if value < 0:
            raise UsageError(f"{where} must be 0 or more US dollars, got {value:g}")
        total = float(value)
    return ShardOptions(shard, shards, total, origin)


def shard_run(
    options: ShardOptions,
    run_dir: Path,
    specs: list[JobSpec] | JobStream,
    settings: RunSettings,
    *,
    staged: bool = False,
) -> tuple[Path, list[JobSpec] | JobStream]:
    """This process's run directory and jobs (all of them without sharding). In a pipeline
    (`staged`) `specs` are the first stages' jobs: a later stage's job is made and run by the
    shard of its parent (a pure function of the first-stage job's key), never sharded again
    by its own key."""
    shard = options.which()
    if shard is None:
        check_run_dir(run_dir, None, STATE_FILE)
        return run_dir, specs
    if options.max_cost_total is not None:
        _split_budget(options.max_cost_total, options.origin["max_cost_total"], settings, shard)
    folder = claim(run_dir, shard, STATE_FILE)
    mine = select(specs, shard.holds_job)  # a JobStream kept them while it checked them
    if staged:
        say(
            f"shard {shard.k} of {shard.n}: {len(mine)} of the {len(specs)} first-stage jobs "
            "(their later stages run in this shard too)"
        )
    else:
        say(f"shard {shard.k} of {shard.n}: {len(mine)} of the {len(specs)} jobs")
    return folder, mine


def known_shard(options: ShardOptions) -> Shard | None:
    """This process's shard when it is known before the manifest is read (for the checking
    pass to keep its jobs); errors are left to shard_run, after the manifest's own."""
    with contextlib.suppress(UsageError):
        return options.which()
    return None


def _split_budget(total: float, where: str, settings: RunSettings, shard: Shard) -> None:
    share = split_budget(total, shard.n)
    settings.apply({"max_cost": share}, origin=where)
    say(f"budget: ${share:.6g} for this shard ({where} {total:g} / N)")


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
