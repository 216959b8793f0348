"""The command line: parse arguments, hand them to a command, map errors to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from pathlib import Path

from batch_runner import __version__
from batch_runner.cli.sharding import add_shard_options
from batch_runner.cli.token import RUNCOMFY_TOKEN_ENV, TOKEN_ENV, scrub
from batch_runner.errors import BatchRunnerError, UsageError
from batch_runner.settings import (
    ACCOUNT_BASE_ENV,
    API_BASE_ENV,
    DEFAULT_ACCOUNT_BASE,
    DEFAULT_API_BASE,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep one message, no usage dump
        raise UsageError(f"{self.prog}: {message}")


_MANIFEST = "YAML, CSV, JSONL or text (.txt) manifest"
_RUN_DIR = "a run directory (made by `batch-runner run`)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="batch-runner", description="Run batches of RunComfy image, video and audio jobs."
    )
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
    run.add_argument("manifest", type=Path, help=_MANIFEST)
    run.add_argument("--out", type=Path, help="run directory (default jobs/<manifest stem>)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an input for every job (repeatable)",
    )
    _model_options(run)
    _run_options(run)
    _pilot_option(run)
    add_shard_options(run)

    resume = add("resume", "continue a run from its state file alone")
    resume.add_argument("run_dir", type=Path, help=_RUN_DIR)
    _run_options(resume)

    status = add("status", "counts per state and failures of a run directory")
    status.add_argument("run_dir", type=Path, help=_RUN_DIR + " (or a folder of its shards)")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")

    cancel = add("cancel", "cancel every job still queued on the server")
    cancel.add_argument("run_dir", type=Path, help=_RUN_DIR)
    _api_options(cancel)
    cancel.add_argument("--json", action="store_true", help="what was cancelled, as JSON on stdout")

    val = add("validate", "expand and validate a manifest offline (exit 2 on error)")
    val.add_argument("manifest", type=Path, help=_MANIFEST)
    val.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an input for every job (repeatable)",
    )
    val.add_argument(
        "--max-jobs", type=int, default=None, help="refuse more jobs than this (default 100000)"
    )
    val.add_argument(
        "--name-template",
        default=None,
        help="check output file names, e.g. '{style}/{subject}-{k}.{ext}' (clashes, fields)",
    )
    val.add_argument(
        "--json",
        action="store_true",
        help='one JSON object on stdout (also on failure: "valid": false, "problems")',
    )
    _media_options(val)
    _model_options(val)
    _api_options(val)
    _offline_option(val)
    _money_option(val)
    _pilot_option(val)

    models = add("models", "list the models batch_runner knows, or show one model's inputs")
    models.add_argument(
        "query",
        nargs="?",
        default=None,
        metavar="SEARCH|MODEL_ID",
        help="words to search for, or a model id (it contains '/') to show its inputs",
    )
    models.add_argument(
        "--kind",
        choices=("image", "video", "audio"),
        default=None,
        help="only models that make this kind of output",
    )
    models.add_argument(
        "--category",
        default=None,
        help="only models in this catalogue category, e.g. image-to-video",
    )
    models.add_argument("--json", action="store_true", help="JSON on stdout")
    _api_options(models)
    _offline_option(models)

    sim = add("simulate", "run the RunComfy simulator in the foreground")
    from batch_runner.simulator import add_arguments

    add_arguments(sim)

    rep = add("report", "write RUN_DIR/report.html")
    rep.add_argument("run_dir", type=Path, help=_RUN_DIR)

    exp = add("export", "write the run's metadata as a table, or its files as a data set")
    exp.add_argument("run_dir", type=Path, help=_RUN_DIR)
    exp.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet", "webdataset"),
        default="csv",
        help="csv/jsonl: a metadata table; parquet/webdataset: the files as a data set "
        "(default csv)",
    )
    exp.add_argument(
        "--out",
        type=Path,
        help="output file or folder (default RUN_DIR/export.<format>, "
        "RUN_DIR/export-webdataset/ for tar shards)",
    )
    exp.add_argument(
        "--shard-size",
        metavar="SIZE",
        help="parquet/webdataset shards of at most SIZE (e.g. 500MB; default 1GB)",
    )
    exp.add_argument(
        "--marked",
        choices=("keep", "reject"),
        default=None,
        help="only the outputs marked so (marks are set in `batch-runner serve`)",
    )

    srv = add("serve", "a live local web page of a run directory: outputs, counts, marks")
    srv.add_argument("run_dir", type=Path, help="a run directory, or a folder of shards")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    srv.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (nothing is authenticated: anyone who can "
        "reach the port sees the outputs and can set marks)",
    )

    merge = add("merge", "one metadata.jsonl and report.html over a run directory's shards")
    merge.add_argument("run_dir", type=Path, help="a run directory holding shard-K-of-N folders")
    return p


def _api_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api-base",
        default=None,
        help=f"API base URL before /v1 (env {API_BASE_ENV}, default {DEFAULT_API_BASE})",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"read the API token from this file (else env {TOKEN_ENV} or {RUNCOMFY_TOKEN_ENV})",
    )


def _media_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-inline-mb",
        type=float,
        help="largest local file or data: URI sent inline, in MB (default 8)",
    )
    p.add_argument(
        "--allow-input-host",
        action="append",
        default=None,
        metavar="HOST",
        help="accept media input URLs on HOST even over http or on a private network",
    )


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="model of the jobs that name none (default bytedance/seedream-5/lite/text-to-image)",
    )
    p.add_argument(
        "--schema",
        type=Path,
        default=None,
        help="JSON Schema file for models without a known schema, or a list of "
        '{"model_id", "input_schema"} entries',
    )


def _offline_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never ask the live model catalogue (bundled or cached schemas and prices only)",
    )


def _money_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="spend at most USD: jobs that do not fit stay pending with the reason 'budget' "
        "(run and resume: the run directory remembers it)",
    )


def _pilot_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pilot",
        type=int,
        metavar="N",
        default=None,
        help="send only N of the new jobs, covering every model and every sweep value when N "
        "allows (the rest stay pending for a later run without --pilot)",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    _api_options(p)
    _offline_option(p)
    _money_option(p)
    p.add_argument(
        "--no-balance-check",
        dest="balance_check",
        action="store_false",
        default=None,
        help="do not read the account balance before the first submit (remembered)",
    )
    p.add_argument(
        "--balance-check",
        dest="balance_check",
        action="store_true",
        default=None,
        help="read the balance again after an earlier --no-balance-check",
    )
    p.add_argument(
        "--no-max-cost",
        action="store_true",
        help="drop the budget the run directory remembers from an earlier --max-cost",
    )
    p.add_argument(
        "--account-base",
        default=None,
        help=f"where the balance is read (env {ACCOUNT_BASE_ENV}, default {DEFAULT_ACCOUNT_BASE} "
        "for the real API, else the API base)",
    )
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
        dest="resubmit_uncertain_now",
        action="store_true",
        help="this run: submit every 'uncertain' job once more, even after 2 lost answers "
        "(each counted as a possible duplicate)",
    )
    p.add_argument(
        "--no-resubmit-uncertain",
        dest="resubmit_uncertain",
        action="store_false",
        default=None,
        help="never resubmit a job whose submit answer was lost on its own: leave it "
        "'uncertain' (never risk paying twice; by default it is resubmitted once)",
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
    _media_options(p)
    p.add_argument("--max-jobs", type=int, help="refuse to submit more new jobs (default 100000)")
    p.add_argument(
        "--export-csv",
        action="store_true",
        default=None,
        help="also write RUN_DIR/export.csv at the end",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="give failed jobs a new round of attempts (without it they stay failed)",
    )
    p.add_argument(
        "--archive",
        type=Path,
        metavar="FILE",
        help="a SQLite archive shared by runs on this machine: jobs it holds with their files "
        "are copied from there, not submitted; every finished job is added (remembered)",
    )
    p.add_argument(
        "--no-archive",
        action="store_true",
        help="stop using the archive the run directory remembers from an earlier --archive",
    )
    p.add_argument(
        "--notify",
        metavar="URL",
        help="POST one JSON message (Slack/Discord webhooks show its text) when the run ends",
    )
    p.add_argument(
        "--on-done",
        metavar="CMD",
        help="run CMD through the shell when the run ends (BATCH_RUNNER_EXIT_CODE, "
        "BATCH_RUNNER_RUN_DIR, BATCH_RUNNER_SUMMARY in its environment)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON on stdout")


# ---- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        args.debug = debug  # given before or after the command name
        from batch_runner.cli import commands  # here: --help and usage errors stay quick

        return commands.dispatch(args)
    except BatchRunnerError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`status | head`): the rest is for no one
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug of ours: one line, or a redacted traceback with --debug
        if debug:
            print(scrub(traceback.format_exc()), file=sys.stderr)
        print(
            f"internal error: {scrub(f'{type(exc).__name__}: {exc}')} "
            "(please report it; --debug shows details)",
            file=sys.stderr,
        )
        return 1
