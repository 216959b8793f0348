"""The command line: parse arguments, build settings, call the library, map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import stat
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch_runner import __version__
from batch_runner.errors import BatchRunnerError, UsageError
from batch_runner.settings import DEFAULT_API_BASE, RunSettings

TOKEN_ENV, BASE_ENV = "RUNCOMFY_API_TOKEN", "RUNCOMFY_API_BASE"
_SECRETS: set[str] = set()  # tokens read in this process, scrubbed from anything printed
RUN_FLAGS = {  # flag dest -> RunSettings field
    "concurrency": "concurrency",
    "rate": "rate",
    "retries": "retries",
    "job_timeout": "job_timeout",
    "resubmit_uncertain": "resubmit_uncertain",
    "name_template": "name_template",
    "allow_download_host": "allow_download_host",
    "max_file_bytes": "max_file_bytes",
    "max_jobs": "max_jobs",
    "export_csv": "export_csv",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep one message, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="batch-runner", description="Run batches of RunComfy text-to-image jobs.")
    p.add_argument("--version", action="version", version=f"batch-runner {__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show internal tracebacks (token redacted)",
    )
    p.add_argument("--debug", action="store_true", help="show internal tracebacks (token redacted)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])  # --debug after it works too

    run = add("run", "expand, validate, then submit/poll/download every job")
    run.add_argument("manifest", type=Path, help="YAML, CSV or JSONL manifest")
    run.add_argument("--out", type=Path, help="run directory (default jobs/<manifest stem>)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an input for every job (repeatable)",
    )
    _run_options(run)

    resume = add("resume", "continue a run from its state file alone")
    resume.add_argument("run_dir", type=Path)
    _run_options(resume)

    status = add("status", "counts per state and failures of a run directory")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")

    cancel = add("cancel", "cancel every job still queued on the server")
    cancel.add_argument("run_dir", type=Path)
    _api_options(cancel)
    cancel.add_argument("--json", action="store_true")

    val = add("validate", "expand and validate a manifest offline (exit 2 on error)")
    val.add_argument("manifest", type=Path)
    val.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    val.add_argument("--max-jobs", type=int, default=None)
    val.add_argument("--name-template", default=None)
    val.add_argument("--json", action="store_true")

    sim = add("simulate", "run the RunComfy simulator in the foreground")
    from batch_runner.simulator import add_arguments

    add_arguments(sim)

    rep = add("report", "write RUN_DIR/report.html")
    rep.add_argument("run_dir", type=Path)

    exp = add("export", "write the run's metadata as CSV or JSONL")
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    exp.add_argument("--out", type=Path, help="output file (default RUN_DIR/metadata.<format>)")
    return p


def _api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-base",
        default=None,
        help=f"API base URL before /v1 (env {BASE_ENV}, default {DEFAULT_API_BASE})",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"read the API token from this file (else env {TOKEN_ENV})",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    _api_options(p)
    p.add_argument(
        "--simulate",
        action="store_true",
        default=None,
        help="use the built-in simulator on 127.0.0.1 (no token, no cost)",
    )
    p.add_argument("--concurrency", type=int, help="most jobs in flight (default 8)")
    p.add_argument("--rate", type=float, help="most API requests per second")
    p.add_argument("--retries", type=int, help="new attempts after a failed generation (default 1)")
    p.add_argument(
        "--job-timeout", type=float, help="seconds before a job is given up (default 3600)"
    )
    p.add_argument(
        "--resubmit-uncertain",
        dest="resubmit_uncertain",
        action="store_true",
        default=None,
        help="resubmit jobs whose submit answer was lost (default)",
    )
    p.add_argument(
        "--no-resubmit-uncertain",
        dest="resubmit_uncertain",
        action="store_false",
        help="leave such jobs 'uncertain' instead (never risk paying twice)",
    )
    p.add_argument("--name-template", help="output file names, e.g. '{style}/{subject}-{k}.{ext}'")
    p.add_argument(
        "--allow-download-host",
        action="append",
        default=None,
        metavar="HOST",
        help="also download outputs from HOST (repeatable)",
    )
    p.add_argument("--max-file-bytes", type=int, help="abort larger downloads (default 2 GiB)")
    p.add_argument("--max-jobs", type=int, help="refuse to submit more new jobs (default 100000)")
    p.add_argument(
        "--export-csv",
        action="store_true",
        default=None,
        help="also write RUN_DIR/metadata.csv at the end",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON on stdout")


# ---- settings and token ---------------------------------------------------------------------


def settings_from(
    args: argparse.Namespace, *, layers: list[tuple[str, dict[str, Any]]]
) -> RunSettings:
    settings = RunSettings()
    for origin, values in layers:
        settings.apply(values, origin=origin)
    flags = {
        field: getattr(args, dest)
        for dest, field in RUN_FLAGS.items()
        if getattr(args, dest, None) is not None
    }
    settings.apply(flags, origin="command line")
    if args.simulate:
        settings.simulate = True
    if args.api_base or os.environ.get(BASE_ENV):
        settings.api_base = args.api_base or os.environ[BASE_ENV]
        settings.simulate = bool(args.simulate)
    settings.progress = not args.no_progress and not args.json
    settings.json = args.json
    settings.check()
    return settings


def read_token(args: argparse.Namespace, settings: RunSettings | None) -> str | None:
    if settings is not None and settings.simulate:
        return None
    if args.token_file is not None:
        return _token_from_file(args.token_file)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        _SECRETS.add(token)
    if not token:
        raise UsageError(
            f"no API token: set {TOKEN_ENV} in the environment or pass --token-file FILE "
            "(or add --simulate to try the built-in simulator)"
        )
    return token


def _token_from_file(path: Path) -> str:
    try:
        info = path.stat()
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"--token-file {path}: cannot read it ({getattr(exc, 'strerror', exc)})"
        ) from None
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} is readable by other users; chmod 600 it", file=sys.stderr)
    if not token:
        raise UsageError(f"--token-file {path}: the file is empty")
    _SECRETS.add(token)
    return token


# ---- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        args.debug = debug  # given before or after the command name
        from batch_runner.cli import commands

        return commands.dispatch(args)
    except BatchRunnerError as exc:
        print(f"error: {_redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: one line, or a redacted traceback with --debug
        if debug:
            print(_redact(traceback.format_exc()), file=sys.stderr)
        print(
            f"internal error: {_redact(f'{type(exc).__name__}: {exc}')} "
            "(please report it; --debug shows details)",
            file=sys.stderr,
        )
        return 1


def _redact(text: str) -> str:
    env_token = os.environ.get(TOKEN_ENV, "").strip()
    for secret in _SECRETS | ({env_token} if env_token else set()):
        text = text.replace(secret, "***")
    return text


def run_async(coro: Any, *, debug: bool = False) -> Any:
    """The one place that starts an event loop."""
    # what start-up built (modules, the schema, settings) lives until exit: keep it out of
    # the collector's sweeps, and sweep less often (a run allocates many short-lived objects)
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    factory = _loop_factory()
    if debug:
        print(f"debug: event loop: {'asyncio' if factory is None else 'uvloop'}", file=sys.stderr)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the same asyncio API for less CPU per
    request. BATCH_RUNNER_LOOP=asyncio keeps the standard loop."""
    if os.environ.get("BATCH_RUNNER_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, ensure_ascii=False))
