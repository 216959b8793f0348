"""One function per command; each returns an exit code. Parsing lives in cli/main.py."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_runner.cli.console import print_json, run_async, say
from batch_runner.cli.formatting import (
    format_estimate,
    format_preview,
    format_summary,
    validate_money,
)
from batch_runner.cli.models import cmd_models
from batch_runner.cli.sharding import (
    SHARD_KEYS,
    ShardOptions,
    cmd_merge,
    is_shard_folder,
    refuse_shard_folder,
    shard_options,
    shard_run,
    status_of_shards,
)
from batch_runner.cli.token import read_token, token_if_any
from batch_runner.errors import BatchRunnerError, StateError, UsageError
from batch_runner.run.lock import RunLock
from batch_runner.settings import ACCOUNT_BASE_ENV, API_BASE_ENV, RunSettings, default_run_dir
from batch_runner.store.state import STATE_FILE, StateStore

if TYPE_CHECKING:
    from batch_runner.manifest.expand import Expansion
    from batch_runner.manifest.load import Parsed
    from batch_runner.manifest.rows import Manifest
    from batch_runner.run.notify import EndHooks
    from batch_runner.run.runner import RunInput, RunResult


def dispatch(args: argparse.Namespace) -> int:
    handler = {
        "run": cmd_run,
        "resume": cmd_resume,
        "status": cmd_status,
        "cancel": cmd_cancel,
        "validate": cmd_validate,
        "simulate": cmd_simulate,
        "report": cmd_report,
        "export": cmd_export,
        "models": cmd_models,
        "merge": cmd_merge,
        "serve": cmd_serve,
    }[args.command]
    return handler(args)


# ---- settings, manifests, run directories ----------------------------------------------------


def command_line(args: argparse.Namespace, *, base_from_env: bool = True) -> dict[str, Any]:
    """The options given on the command line, as the top layer of RunSettings.from_layers."""
    flags = {
        key: getattr(args, key)
        for key in RunSettings.MANIFEST_KEYS
        if getattr(args, key, None) is not None
    }
    if getattr(args, "retry_failed", False):
        flags["retry_failed"] = True
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


_NOT_SETTINGS = ("out", *SHARD_KEYS)  # manifest options that prepare_run and shard_run read


def _load(
    args: argparse.Namespace, parsed: Parsed | None = None
) -> tuple[Expansion, RunSettings, ShardOptions]:
    """The offline pipeline of `run` and `validate`: the manifest's jobs, and the settings and
    shard options its `options:` and the command line give (read first: --max-jobs etc. shape
    the checks). `parsed`: the manifest already read (the Python API's list of jobs), else the
    file is read."""
    from batch_runner.manifest.expand import parse_set
    from batch_runner.manifest.load import load_jobs
    from batch_runner.manifest.media import Limits
    from batch_runner.manifest.read import read_manifest

    overrides = parse_set(args.set)
    parsed = parsed if parsed is not None else read_manifest(args.manifest)
    manifest = parsed[0]  # None: load_jobs says what is wrong with it
    options = manifest.options if manifest is not None else {}
    origin = manifest.options_origin if manifest is not None else "options"
    shards = shard_options(args, options, origin)
    run_options = {
        k: v for k, v in options.items() if str(k).replace("-", "_") not in _NOT_SETTINGS
    }
    settings = RunSettings.from_layers((origin, run_options), ("command line", command_line(args)))
    resolution = _resolve(args, parsed[0], settings)
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
    )
    for warning in expansion.warnings:
        say(f"warning: {warning}")
    return dataclasses.replace(expansion, entries=resolution.catalogue), settings, shards


def _resolve(args: argparse.Namespace, manifest: Manifest | None, settings: RunSettings):
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


@contextlib.contextmanager
def open_store(run_dir: Path, *, readonly: bool = True, hint: str = "") -> Iterator[StateStore]:
    """The state file of a finished or running run directory (never created here), closed after."""
    if not (run_dir / STATE_FILE).is_file():
        raise StateError(f"{run_dir}: no state file here ({STATE_FILE} is missing){hint}")
    store = StateStore.open(run_dir, readonly=readonly)
    try:
        yield store
    finally:
        store.close()


def _token(args: argparse.Namespace, settings: RunSettings) -> str | None:
    return None if settings.simulate else read_token(args.token_file)


# ---- run / resume ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    return _execute(prepare_run(args), args)


def prepare_run(args: argparse.Namespace, parsed: Parsed | None = None) -> RunInput:
    """Everything `run` does before the event loop: jobs, settings, token, run directory."""
    from batch_runner.run.runner import RunInput

    expansion, settings, shards = _load(args, parsed)
    run_dir = args.out or Path(str(expansion.options.get("out") or ""))
    if not run_dir.parts:
        run_dir = default_run_dir(args.manifest)
        _check_same_stem(run_dir, args.manifest)
    run_dir, specs = shard_run(shards, run_dir, expansion.jobs, settings)
    token = _token(args, settings)
    say(f"{len(expansion.jobs)} jobs in {args.manifest}; run directory {run_dir}")
    manifest = args.manifest if parsed is None else None  # a list of jobs has no file to copy
    return RunInput(run_dir, settings, token, specs, manifest, expansion.entries)


def _check_same_stem(run_dir: Path, manifest: Path) -> None:
    """jobs/<stem> is named for the manifest's file name only: another manifest of the same
    name must not slip its jobs into this run (and be billed as one run)."""
    if not (run_dir / STATE_FILE).is_file():
        return
    with open_store(run_dir) as store:
        other = store.get_meta("manifest_path") or store.get_meta("manifest")
    if other and Path(other).resolve() != manifest.resolve():
        raise UsageError(
            f"{run_dir} holds the run of another manifest with the same name ({other}); "
            f"give this one its own run directory with --out DIR"
        )


def cmd_resume(args: argparse.Namespace) -> int:
    from batch_runner.run.runner import RunInput

    hint = "; nothing to resume"
    if is_shard_folder(args.run_dir):
        hint = "; it holds shards: resume each RUN_DIR/shard-K-of-N, or run the manifest again"
    with open_store(args.run_dir, hint=hint) as store:
        stored = store.get_meta("settings", {}) or {}
        settings = RunSettings.from_layers(
            ("state file", stored), ("command line", command_line(args))
        )
        if args.name_template:
            _check_template(args.name_template, store)
    token = _token(args, settings)
    return _execute(RunInput(args.run_dir, settings, token), args)


def _check_template(template: str, store: StateStore) -> None:
    """A new --name-template must fit every job of the run before anything is downloaded."""
    from batch_runner.manifest.naming import check_template, name_clashes

    check_template(template)
    jobs = store.jobs(with_files=False)
    clashes, failed = name_clashes(template, ((job.index, job) for job in jobs))
    if failed:
        raise UsageError(failed[0][1])
    if clashes:
        a, b, name = clashes[0]
        raise UsageError(f"--name-template gives jobs {a.key} and {b.key} the same name '{name}'")


def end_hooks(args: argparse.Namespace) -> EndHooks:
    from batch_runner.run.notify import EndHooks

    return EndHooks(getattr(args, "notify", None), getattr(args, "on_done", None))


def _execute(inp: RunInput, args: argparse.Namespace) -> int:
    result = run_async(run_batch(inp, end_hooks(args)), debug=args.debug)
    if args.json:
        print_json(result.summary)
    say(format_summary(result.summary))
    if result.exit_code == 130:
        say(f"interrupted: state saved; continue with `batch-runner resume {inp.run_dir}`")
    return result.exit_code


async def run_batch(inp: RunInput, hooks: EndHooks | None = None) -> RunResult:
    """The one coroutine of a run, for the command line and the Python API alike; `hooks`
    (--notify, --on-done) are told once however it ends or stops, after the lock is freed."""
    from batch_runner.run.runner import execute, open_run

    lock = RunLock(inp.run_dir)
    try:
        store = open_run(inp, lock)
    except BaseException:
        lock.release()
        raise
    ended: tuple[int, dict[str, Any], bool] | None = None
    try:
        result = await execute(inp, store)
        ended = (result.exit_code, result.summary, result.cancelled)
        if inp.settings.export_csv:
            _export(inp.run_dir, store, "csv", None)
    except (BatchRunnerError, KeyboardInterrupt) as exc:  # stopped before it could summarise
        if ended is None:
            ended = _stopped(store, exc)
        raise
    finally:
        store.close()
        lock.release()
        if hooks and ended is not None:
            await _tell_end(hooks, inp.run_dir, *ended)
    return result


def _stopped(store: StateStore, exc: BaseException) -> tuple[int, dict[str, Any], bool]:
    summary = store.summary()
    if isinstance(exc, BatchRunnerError):
        return exc.exit_code, summary | {"error": str(exc)}, False
    return 130, summary, False


async def _tell_end(
    hooks: EndHooks, run_dir: Path, code: int, summary: dict[str, Any], cancelled: bool
) -> None:
    from batch_runner.run.notify import event_of, run_end

    event = event_of(code, summary, cancelled=cancelled)
    await run_end(hooks, code, run_dir, summary, event=event)


# ---- status / report / export ---------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    if is_shard_folder(args.run_dir):
        return status_of_shards(args)
    with open_store(args.run_dir) as store:
        summary = store.summary()
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from batch_runner.report.page import write_report

    refuse_shard_folder(args.run_dir, "report")
    with open_store(args.run_dir) as store:
        try:
            path = write_report(args.run_dir, store, title=args.run_dir.name)
        except OSError as exc:
            raise StateError(f"{args.run_dir}: cannot write report.html ({exc.strerror})") from None
    print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from batch_runner.exports.dataset import DATASET_FORMATS

    if args.format in DATASET_FORMATS or args.shard_size is not None:
        return _export_dataset(args)
    refuse_shard_folder(args.run_dir, "export")
    with open_store(args.run_dir) as store:
        out, n = _export(args.run_dir, store, args.format, args.out, args.marked)
    print(f"{out} ({n} rows" + (f" marked {args.marked})" if args.marked else ")"))
    return 0


def _export_dataset(args: argparse.Namespace) -> int:
    from batch_runner.exports.dataset import DATASET_FORMATS, export_dataset, parse_size

    if args.format not in DATASET_FORMATS:
        raise UsageError(f"--shard-size is for --format parquet or webdataset, not {args.format}")
    size = parse_size(args.shard_size) if args.shard_size is not None else None
    try:
        done = export_dataset(args.run_dir, args.format, args.out, size, args.marked)
    except OSError as exc:
        where = exc.filename or args.run_dir
        raise StateError(f"{where}: cannot export ({exc.strerror})") from None
    tally = done.tally
    left = sum(tally.not_exported.values())
    print(
        f"{done.path} ({tally.samples} samples, {done.files} file{'s' * (done.files != 1)}"
        + (f"; {left} job{'s' * (left != 1)} without files not exported" if left else "")
        + (f"; only jobs marked {args.marked}" if args.marked else "")
        + ")"
    )
    if tally.waiting:
        say(f"not started yet (nothing exported from them): {', '.join(tally.waiting)}")
    return 0


def _export(
    run_dir: Path, store: StateStore, fmt: str, out: Path | None, marked: str | None = None
) -> tuple[Path, int]:
    from batch_runner.report.export import export_path, write_export

    out = export_path(run_dir, fmt, out)
    try:
        return out, write_export(store, out, fmt, marked)
    except OSError as exc:
        raise StateError(f"{out}: cannot write ({exc.strerror})") from None


# ---- validate / simulate / cancel -----------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from batch_runner.run.pricing import estimate_specs

    expansion, settings, _ = _load(args)
    token = None if settings.offline else token_if_any(args.token_file)
    models = expansion.model_counts()
    est, prices, entries = run_async(
        estimate_specs(expansion.jobs, settings.api_base, token, expansion.entries),
        debug=args.debug,
    )
    money = validate_money(est, prices, entries, settings.max_cost)
    # models no catalogue could confirm (offline): listed, as the API may refuse them
    unknown = [m for m in models if m in expansion.entries and expansion.entries[m] is None]
    if args.json:
        print_json(
            {
                "jobs": len(expansion.jobs),
                "models": models,
                "estimated_cost_usd": est.known_total,
                "sweeps": [{"source": str(loc), "jobs": n} for loc, n in expansion.sweep_counts],
                "warnings": expansion.warnings,
                "unknown_models": unknown,
            }
            | money
        )
        return 0
    names = ", ".join(f"{m}: {n}" for m, n in models.items()) if len(models) > 1 else None
    one = next(iter(models), expansion.model)
    print(f"{args.manifest}: {len(expansion.jobs)} jobs, valid ({names or one})")
    if unknown:
        print(f"  in no catalogue (inputs not checked; the API may refuse): {', '.join(unknown)}")
    for loc, n in expansion.sweep_counts:
        print(f"  sweep at {loc}: {n} jobs")
    print(format_preview(expansion.jobs))
    print(format_estimate(est, money))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from batch_runner.simulator import config_from_args, serve

    config = config_from_args(args)
    try:
        run_async(serve(config, args.host, args.port), debug=args.debug)
    except OSError as exc:
        raise UsageError(
            f"simulate: cannot listen on {args.host}:{args.port} ({exc.strerror})"
        ) from None
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from batch_runner.serve.app import LOOPBACK, serve
    from batch_runner.serve.view import RunView

    if args.host not in LOOPBACK:
        if not args.allow_remote:
            raise UsageError(
                f"serve --host {args.host} would show this run to every machine that can reach "
                "it, with nothing authenticated; add --allow-remote to do so anyway"
            )
        say(f"warning: serving on {args.host}: anyone who reaches it sees the outputs and marks")
    view = RunView.of(args.run_dir)
    try:
        run_async(serve(view, args.host, args.port, announce=_announce), debug=args.debug)
    except OSError as exc:
        raise UsageError(
            f"serve: cannot listen on {args.host}:{args.port} ({exc.strerror})"
        ) from None
    except KeyboardInterrupt:
        return 0
    return 0


def _announce(text: str) -> None:
    print(text, flush=True)


def cmd_cancel(args: argparse.Namespace) -> int:
    from batch_runner.run.cancel import cancel_queued, stop_live_run

    live = stop_live_run(args.run_dir) if (args.run_dir / STATE_FILE).is_file() else None
    if live is not None:
        say(
            f"told the running batch-runner (pid {live}) to stop submitting: it finishes the "
            "jobs in flight and exits 1; `batch-runner resume` continues the rest later"
        )
    with open_store(args.run_dir, readonly=live is not None) as store:
        stored = store.get_meta("settings", {}) or {}
        # only --api-base moves a cancel elsewhere: the jobs live where they were submitted
        flags = command_line(args, base_from_env=False)
        settings = RunSettings.from_layers(("state file", stored), ("command line", flags))
        if settings.simulate:
            if live is not None:
                return 0  # its in-process simulator dies with it: nothing else to cancel
            raise UsageError(
                "this run used the in-process simulator, which stopped with it: "
                "there is nothing on a server to cancel"
            )
        token = read_token(args.token_file)
        cancel = cancel_queued(store, settings.api_base, token, record=live is None)
        result = run_async(cancel, debug=args.debug)
    result["stopped_run"] = live
    if args.json:
        print_json(result)
    else:
        _print_cancelled(result)
    return 0


def _print_cancelled(result: dict[str, Any]) -> None:
    print(
        f"cancelled: {len(result['cancelled'])}, not cancellable: "
        f"{len(result['not_cancellable'])}, errors: {len(result['errors'])}"
    )
    for rid in result["not_cancellable"]:
        print(f"  not cancellable (already running or finished): {rid}")
    for err in result["errors"]:
        print(f"  error: {err}")
