"""One function per command; each returns an exit code. Parsing lives in cli.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from batch_runner.cli import main as cli
from batch_runner.cli.formatting import format_preview, format_summary
from batch_runner.errors import StateError, UsageError
from batch_runner.run.lock import RunLock
from batch_runner.settings import RunSettings, default_run_dir
from batch_runner.store.state import StateStore

if TYPE_CHECKING:
    from batch_runner.errors import Problem
    from batch_runner.manifest.read import Manifest


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
    }[args.command]
    return handler(args)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- run / resume ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from batch_runner.manifest.expand import parse_set
    from batch_runner.manifest.read import read_manifest
    from batch_runner.manifest.schema import load_jobs
    from batch_runner.run.runner import RunInput

    overrides = parse_set(args.set)
    parsed = read_manifest(args.manifest)
    options = _manifest_options(parsed)  # first, so --max-jobs etc. shape the validation
    settings = cli.settings_from(args, layers=[("manifest options", options)])
    expansion = load_jobs(
        args.manifest,
        overrides=overrides,
        max_jobs=settings.max_jobs,
        name_template=settings.name_template,
        parsed=parsed,
    )
    for warning in expansion.warnings:
        _say(f"warning: {warning}")
    token = cli.read_token(args, settings)
    run_dir = args.out or Path(str(expansion.options.get("out") or default_run_dir(args.manifest)))
    _say(f"{len(expansion.jobs)} jobs in {args.manifest}; run directory {run_dir}")
    inp = RunInput(run_dir, settings, token, expansion.jobs, args.manifest)
    del expansion  # the run input holds the jobs only until they are in the state file
    return _execute(inp, args)


def _manifest_options(parsed: tuple[Manifest | None, list[Problem]]) -> dict:
    """The manifest's `options:` (without `out`); problems are reported later by load_jobs."""
    manifest = parsed[0]
    options = manifest.options if manifest is not None else {}
    return {k: v for k, v in options.items() if k != "out"}


def cmd_resume(args: argparse.Namespace) -> int:
    from batch_runner.run.runner import RunInput

    run_dir: Path = args.run_dir
    if not (run_dir / "state.db").is_file():
        raise StateError(f"{run_dir}: no state file here (state.db is missing); nothing to resume")
    store = StateStore.open(run_dir, readonly=True)
    try:
        stored = store.get_meta("settings", {}) or {}
        settings = cli.settings_from(args, layers=[("state file", stored)])
        if args.name_template:
            _check_template(args.name_template, store)
    finally:
        store.close()
    token = cli.read_token(args, settings)
    return _execute(RunInput(run_dir, settings, token), args)


def _check_template(template: str, store: StateStore) -> None:
    """A new --name-template must fit every job of the run before anything is downloaded."""
    from batch_runner.outputs.naming import check_template, find_collisions, render_name

    check_template(template)
    names = {}
    for job in store.jobs(with_files=False):
        ext = str(job.inputs.get("output_format", "png"))
        names[job.key] = render_name(
            template,
            index=job.index,
            key=job.key,
            inputs=job.inputs,
            vars=job.vars,
            k=1,
            n_files=1,
            ext=ext,
        )
    clashes = find_collisions(names)
    if clashes:
        a, b, name = clashes[0]
        raise UsageError(f"--name-template gives jobs {a} and {b} the same name '{name}'")


def _execute(inp, args: argparse.Namespace) -> int:
    from batch_runner.run.runner import execute, open_run

    lock = RunLock(inp.run_dir)
    try:
        store = open_run(inp, lock)
    except BaseException:
        lock.release()
        raise
    try:
        result = cli.run_async(execute(inp, store), debug=args.debug)
        if inp.settings.export_csv:
            _export(inp.run_dir, store, "csv", None)
    finally:
        store.close()
        lock.release()
    if args.json:
        cli.print_json(result.summary)
    _say(format_summary(result.summary))
    if result.exit_code == 130:
        _say(f"interrupted: state saved; continue with `batch-runner resume {inp.run_dir}`")
    return result.exit_code


# ---- status / report / export ---------------------------------------------------------------


def _open_readonly(run_dir: Path) -> StateStore:
    if not (run_dir / "state.db").is_file():
        raise StateError(f"{run_dir}: no state file here (state.db is missing)")
    return StateStore.open(run_dir, readonly=True)


def cmd_status(args: argparse.Namespace) -> int:
    store = _open_readonly(args.run_dir)
    try:
        summary = store.summary()
    finally:
        store.close()
    if args.json:
        cli.print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from batch_runner.report.page import write_report

    store = _open_readonly(args.run_dir)
    try:
        path = write_report(args.run_dir, store, title=args.run_dir.name)
    except OSError as exc:
        raise StateError(f"{args.run_dir}: cannot write report.html ({exc.strerror})") from None
    finally:
        store.close()
    print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _open_readonly(args.run_dir)
    try:
        out, n = _export(args.run_dir, store, args.format, args.out)
    finally:
        store.close()
    print(f"{out} ({n} rows)")
    return 0


def _export(run_dir: Path, store: StateStore, fmt: str, out: Path | None) -> tuple[Path, int]:
    from batch_runner.report.export import write_export

    out = out or run_dir / f"metadata.{fmt}"
    try:
        return out, write_export(store, out, fmt)
    except OSError as exc:
        raise StateError(f"{out}: cannot write ({exc.strerror})") from None


# ---- validate / simulate / cancel -----------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from batch_runner.manifest.expand import parse_set
    from batch_runner.manifest.read import read_manifest
    from batch_runner.manifest.schema import load_jobs

    parsed = read_manifest(args.manifest)
    settings = RunSettings()
    settings.apply(_manifest_options(parsed), origin="manifest options")
    max_jobs = args.max_jobs if args.max_jobs is not None else settings.max_jobs
    template = args.name_template or settings.name_template
    expansion = load_jobs(
        args.manifest,
        overrides=parse_set(args.set),
        max_jobs=max_jobs,
        name_template=template,
        parsed=parsed,
    )
    for warning in expansion.warnings:
        _say(f"warning: {warning}")
    if args.json:
        cli.print_json(
            {
                "jobs": len(expansion.jobs),
                "sweeps": [{"source": str(loc), "jobs": n} for loc, n in expansion.sweep_counts],
                "warnings": expansion.warnings,
            }
        )
        return 0
    print(f"{args.manifest}: {len(expansion.jobs)} jobs, valid ({expansion.model})")
    for loc, n in expansion.sweep_counts:
        print(f"  sweep at {loc}: {n} jobs")
    print(format_preview(expansion.jobs))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from batch_runner.simulator import config_from_args, serve

    config = config_from_args(args)
    try:
        cli.run_async(serve(config, args.host, args.port), debug=args.debug)
    except OSError as exc:
        raise UsageError(
            f"simulate: cannot listen on {args.host}:{args.port} ({exc.strerror})"
        ) from None
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from batch_runner.run.cancel import cancel_queued

    if not (args.run_dir / "state.db").is_file():
        raise StateError(f"{args.run_dir}: no state file here (state.db is missing)")
    store = StateStore.open(args.run_dir)
    try:
        stored = store.get_meta("settings", {}) or {}
        settings = RunSettings()
        settings.apply(stored, origin="state file")
        if args.api_base:
            settings.api_base, settings.simulate = args.api_base, False
        if settings.simulate:
            raise UsageError(
                "this run used the in-process simulator, which stopped with it: "
                "there is nothing on a server to cancel"
            )
        token = cli.read_token(args, settings)
        result = cli.run_async(cancel_queued(store, settings.api_base, token), debug=args.debug)
    finally:
        store.close()
    if args.json:
        cli.print_json(result)
    else:
        print(
            f"cancelled: {len(result['cancelled'])}, not cancellable: "
            f"{len(result['not_cancellable'])}, errors: {len(result['errors'])}"
        )
        for rid in result["not_cancellable"]:
            print(f"  not cancellable (already running or finished): {rid}")
        for err in result["errors"]:
            print(f"  error: {err}")
    return 0
