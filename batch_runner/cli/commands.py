"""One function per command; each returns an exit code. Parsing lives in cli/main.py."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_runner.cli.console import print_json, run_async, say
from batch_runner.cli.formatting import (
    format_cancelled,
    format_summary,
)
from batch_runner.cli.loading import command_line, load_args
from batch_runner.cli.models import cmd_models
from batch_runner.cli.sharding import (
    cmd_merge,
    is_shard_folder,
    refuse_shard_folder,
    shard_run,
    status_of_shards,
)
from batch_runner.cli.token import read_token
from batch_runner.cli.validate import cmd_validate
from batch_runner.errors import BatchRunnerError, StateError, UsageError
from batch_runner.run.lock import RunLock
from batch_runner.settings import RunSettings
from batch_runner.store.state import STATE_FILE, StateStore
from batch_runner.words import plural

if TYPE_CHECKING:
    from batch_runner.manifest.load import Parsed
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
    from batch_runner.cli.stages import in_shard, run_children
    from batch_runner.run.runner import RunInput

    loaded = load_args(args, parsed, run=True)
    expansion, settings = loaded.expansion, loaded.settings
    if loaded.run_dir is None:  # never: a manifest that cannot be read stops in load_args
        raise UsageError(f"{args.manifest}: no run directory")
    staged = bool(expansion.stages)  # a pipeline: children run in their parent's shard
    run_dir, specs = shard_run(
        loaded.shards, loaded.run_dir, expansion.jobs, settings, staged=staged
    )
    token = _token(args, settings)
    known = len(expansion.jobs) + len(run_children(expansion.stages))  # {run:}: known now
    say(f"{plural(known, 'job')} in {args.manifest}; run directory {run_dir}")
    manifest = args.manifest if parsed is None else None  # a list of jobs has no file to copy
    inp = RunInput(
        run_dir, settings, token, specs, manifest, expansion.entries, loaded.manifest_options
    )
    inp.stages = in_shard(expansion.stages, loaded.shards.which())  # None: a single stage
    inp.pilot_seed = expansion.seed
    return inp


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
    if result.summary.get("pilot_pending"):
        say(
            f"pilot: {plural(result.summary['pilot_pending'], 'new job')} left pending; "
            "run the manifest again without --pilot to send them"
        )
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
        print(format_summary(summary, run_dir=args.run_dir))
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
        print(format_cancelled(result))
    return 0
