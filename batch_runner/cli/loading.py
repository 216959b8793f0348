"""What `run` and `validate` read before anything is sent: the settings from their layers (what
the run directory remembers, the manifest's `options:`, the command line), the manifest's jobs,
and the catalogue entry of each model it names."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_runner.cli.console import run_async, say
from batch_runner.cli.layers import Remembered, plain, run_place
from batch_runner.cli.sharding import (
    SHARD_KEYS,
    ShardOptions,
    is_shard_folder,
    known_shard,
    shard_options,
)
from batch_runner.cli.token import token_if_any
from batch_runner.errors import UsageError
from batch_runner.settings import ACCOUNT_BASE_ENV, API_BASE_ENV, RunSettings
from batch_runner.store.state import STATE_FILE

if TYPE_CHECKING:
    from collections.abc import Callable

    from batch_runner.jobs import JobSpec
    from batch_runner.manifest.expand import Expansion
    from batch_runner.manifest.load import Parsed
    from batch_runner.manifest.rows import Manifest
    from batch_runner.money import Priced


def command_line(args: argparse.Namespace, *, base_from_env: bool = True) -> dict[str, Any]:
    """The options given on the command line, as the top layer of RunSettings.from_layers."""
    flags = {
        key: getattr(args, key)
        for key in RunSettings.MANIFEST_KEYS
        if getattr(args, key, None) is not None
    }
    if getattr(args, "no_max_cost", False):  # the budget the run directory remembers, dropped
        if flags.get("max_cost") is not None:
            raise UsageError("give --max-cost USD or --no-max-cost, not both")
        flags["max_cost"] = None
    flags |= _archive_flag(args)
    flags |= _this_run_only(args)
    simulate = getattr(args, "simulate", None)
    if simulate:
        flags["simulate"] = True
    if hasattr(args, "api_base"):  # the commands that talk to an API
        api_base = args.api_base or (os.environ.get(API_BASE_ENV) if base_from_env else None)
        if api_base:  # another API than the stored one: the stored simulator no longer applies
            flags |= {"api_base": api_base, "simulate": bool(simulate)}
    if hasattr(args, "account_base"):
        account = args.account_base or (os.environ.get(ACCOUNT_BASE_ENV) if base_from_env else None)
        if account:
            flags["account_base"] = account
    if hasattr(args, "no_progress"):
        flags["progress"] = not args.no_progress and not args.json
        flags["json"] = args.json
    return flags


def _this_run_only(args: argparse.Namespace) -> dict[str, Any]:
    """The flags for this run only, never remembered by the run directory."""
    flags: dict[str, Any] = {}
    if getattr(args, "retry_failed", False):
        flags["retry_failed"] = True
    if getattr(args, "resubmit_uncertain_now", False):
        flags["resubmit_uncertain_now"] = True
    if getattr(args, "pilot", None) is not None:
        if args.pilot < 1:
            raise UsageError(f"--pilot must be at least 1 job, got {args.pilot}")
        flags["pilot"] = args.pilot
    return flags


def _archive_flag(args: argparse.Namespace) -> dict[str, Any]:
    """--archive FILE (kept as an absolute path: a later resume may start elsewhere) or
    --no-archive (the remembered one dropped)."""
    archive, dropped = getattr(args, "archive", None), getattr(args, "no_archive", False)
    if archive is not None and dropped:
        raise UsageError("give --archive FILE or --no-archive, not both")
    if archive is not None:
        return {"archive": str(archive.expanduser().absolute())}
    return {"archive": None} if dropped else {}


_NOT_SETTINGS = ("out", *SHARD_KEYS)  # manifest options that prepare_run and shard_run read


@dataclass
class Loaded:
    """What `run` and `validate` read before anything is sent."""

    expansion: Expansion
    settings: RunSettings
    shards: ShardOptions
    run_dir: Path | None = None  # `run`: the run directory (before any shard folder)
    manifest_options: dict[str, Any] = field(default_factory=dict)  # `plain`, to remember
    priced: Priced | None = None  # `validate`: the jobs priced as they were checked


def load_args(
    args: argparse.Namespace,
    parsed: Parsed | None = None,
    *,
    run: bool = False,
    price: bool = False,
) -> Loaded:
    """The offline pipeline of `run` and `validate`: the manifest's jobs, and the settings and
    shard options its `options:` and the command line give (read first: --max-jobs etc. shape
    the checks), over what the run directory remembers (`run`). `parsed`: the manifest
    already read (the Python API's list of jobs), else the file is read. `price`: each job
    priced from the catalogue entries resolved here as it is checked (Loaded.priced)."""
    from batch_runner.manifest.expand import parse_set
    from batch_runner.manifest.load import load_jobs
    from batch_runner.manifest.media import Limits
    from batch_runner.manifest.read import read_manifest
    from batch_runner.money import Priced
    from batch_runner.run.run_axis import reader

    overrides = parse_set(args.set)
    if parsed is None:
        refuse_run_dir(args.manifest, args.command)
        parsed = read_manifest(args.manifest)
    manifest = parsed[0]  # None: load_jobs says what is wrong with it
    options = plain(manifest.options) if manifest is not None else {}
    origin = manifest.options_origin if manifest is not None else "options"
    shards = shard_options(args, options, origin)
    run_dir, remembered = None, Remembered()
    if run and manifest is not None:
        run_dir, remembered, shards = run_place(args, options, shards)
    given = {k: v for k, v in remembered.given(options).items() if k not in _NOT_SETTINGS}
    settings = RunSettings.from_layers(
        ("state file", remembered.settings), (origin, given), ("command line", command_line(args))
    )
    resolution = resolve_catalogue(args, parsed[0], settings)
    priced = Priced(resolution.catalogue) if price else None
    expansion = load_jobs(
        args.manifest,
        overrides=overrides,
        max_jobs=settings.max_jobs,
        name_template=settings.name_template,
        parsed=parsed,
        model=args.model,
        schemas=resolution.schemas(),
        media=Limits.of(settings.max_inline_mb, settings.allow_input_host),
        refused=resolution.refused,
        entries=resolution.catalogue,
        select=_shard_select(shards) if run else None,
        runs=reader(run_dir),  # {run: DIR}: another run directory's finished files
        tally=(lambda job: priced.add(job.model, job.inputs)) if priced is not None else None,
    )
    for warning in expansion.warnings:
        say(f"warning: {warning}")
    expansion = dataclasses.replace(expansion, entries=resolution.catalogue)
    return Loaded(expansion, settings, shards, run_dir, options, priced)


def _shard_select(shards: ShardOptions) -> Callable[[JobSpec], bool] | None:
    """A shard's jobs are kept as the manifest's are checked (no second pass over them)."""
    shard = known_shard(shards)
    return shard.holds_job if shard is not None else None


def refuse_run_dir(path: Path, command: str) -> None:
    """A run directory given where a manifest goes: say which command reads it."""
    if (path / STATE_FILE).is_file():
        more = f" (or `batch-runner run MANIFEST --out {path}` to add jobs to it)"
        raise UsageError(
            f"{path} is a run directory: use `batch-runner resume {path}` to continue it"
            + (more if command == "run" else f", `batch-runner status {path}` to see it")
        )
    if is_shard_folder(path):
        raise UsageError(
            f"{path} is a folder of shards, not a manifest: `batch-runner status {path}` adds "
            f"them up; `batch-runner resume {path}/shard-K-of-N` continues one"
        )


def resolve_catalogue(args: argparse.Namespace, manifest: Manifest | None, settings: RunSettings):
    """The catalogue entry of each model the manifest uses (asked once per model per run)."""
    from batch_runner.api.catalog import Resolution
    from batch_runner.manifest.expand import manifest_models
    from batch_runner.manifest.schema_file import read_schema_file
    from batch_runner.run.catalog import resolve_models

    schema_file = read_schema_file(args.schema) if args.schema else None
    if manifest is None:
        return Resolution({})
    if args.model:
        manifest = dataclasses.replace(manifest, model=args.model)
    token = None if settings.simulate else token_if_any(args.token_file)
    resolution = run_async(
        resolve_models(manifest_models(manifest), settings, token, schema_file), debug=args.debug
    )
    for warning in resolution.warnings:
        say(f"warning: {warning}")
    for note in resolution.notes:
        say(f"note: {note}")
    return resolution
