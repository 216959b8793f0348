"""The Python API: `run` / `arun`, the `run` command from Python (a notebook, a script).

Options are the command line's flags named with `_` (`concurrency=8`, `name_template=...`);
they are turned into the very argument list `batch-runner run` would parse, so every run flag
works here too and is checked the same way. Errors are the `batch_runner.errors` tree; nothing
here calls `sys.exit`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_runner.errors import UsageError

if TYPE_CHECKING:
    from batch_runner.run.runner import RunResult

Manifest = str | os.PathLike | Sequence[str | Mapping[str, Any]] | Mapping[str, Any]
LIST_NAME = "<jobs>"  # how problems name a list of jobs: "<jobs>:3: resolution: ..."
MAPPING_NAME = "<manifest>"  # and a manifest given as a mapping (its YAML form's lines)


def run(
    manifest: Manifest, *, out: str | os.PathLike | None = None, simulate: bool = False, **options
) -> RunResult:
    """Run a batch and wait for it: `manifest` is a manifest file, a list of prompt strings
    and job mappings, or a mapping shaped like a YAML manifest (`{"stages": {...}}`, `{"jobs":
    [...], "sweep": [...]}`; for a list or a mapping `out`, the run directory, is required).
    Returns a RunResult.

    Inside a running event loop (a Jupyter cell) the run gets its own loop on a worker thread,
    so the call still simply blocks until the batch is finished.
    """
    from batch_runner.cli.console import run_async

    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task]] = []

    async def go() -> RunResult:
        running.append((asyncio.get_running_loop(), asyncio.current_task()))  # type: ignore[arg-type]
        return await arun(manifest, out=out, simulate=simulate, **options)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_async(go())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batch_runner") as pool:
        future = pool.submit(run_async, go())
        try:
            return future.result()
        except KeyboardInterrupt:
            # Ctrl-C in the notebook reaches this thread, not the run's: the run stops at once,
            # as after a second Ctrl-C on the command line (state saved; exit code 130)
            for loop, task in running:
                loop.call_soon_threadsafe(task.cancel)
            try:
                return future.result()
            except asyncio.CancelledError:  # stopped before the workers started
                raise KeyboardInterrupt from None


async def arun(
    manifest: Manifest, *, out: str | os.PathLike | None = None, simulate: bool = False, **options
) -> RunResult:
    """`run` as a coroutine: `result = await batch_runner.arun([...], out="jobs/x")`."""
    from batch_runner.cli.commands import end_hooks, prepare_run, run_batch

    progress = bool(options.pop("progress", False))
    args, parsed = _arguments(manifest, out, simulate, options)
    # off the loop: validation is blocking work, and it reads the live catalogue with a loop of
    # its own (the command line's run_async), which cannot run inside this one
    inp = await asyncio.to_thread(prepare_run, args, parsed)
    inp.settings.progress = False  # no periodic log lines: bars when asked, else silence
    inp.settings.tqdm_auto = progress
    return await run_batch(inp, end_hooks(args))


def _arguments(
    manifest: Manifest, out: Any, simulate: bool, options: dict[str, Any]
) -> tuple[argparse.Namespace, Any]:
    """The parsed `run` arguments, and the manifest already read when it is a list."""
    from batch_runner.cli.main import build_parser

    parsed = None
    if isinstance(manifest, str | os.PathLike):
        path = str(manifest)
    elif isinstance(manifest, Sequence | Mapping):
        if out is None:
            what = "a list of jobs" if isinstance(manifest, Sequence) else "a manifest mapping"
            raise UsageError(f"run: {what} needs out=RUN_DIR (where its files go)")
        if isinstance(manifest, Mapping):
            parsed, path = _read_mapping(manifest), MAPPING_NAME
        else:
            parsed, path = _read_list(manifest), LIST_NAME
    else:
        raise UsageError(
            f"run: manifest must be a file path, a list of prompts/jobs or a manifest mapping, "
            f"not {type(manifest).__name__}"
        )
    if out is not None:
        options["out"] = out
    if simulate:
        options["simulate"] = True
    parser = build_parser()
    argv = ["run", path, *_flags(_run_parser(parser), options)]
    return parser.parse_args(argv), parsed


def _read_list(items: Sequence[Any]) -> Any:
    from batch_runner.manifest.read_jsonl import read_items

    return read_items(Path(LIST_NAME), enumerate(items, 1))


def _read_mapping(manifest: Mapping[str, Any]) -> Any:
    """A manifest given as a mapping, read as the YAML file it would be (so `stages:`, sweeps
    and every check are the YAML reader's; problems name `<manifest>:LINE` of that YAML)."""
    import yaml

    from batch_runner.manifest.read_yaml import read_yaml

    try:
        text = yaml.safe_dump(dict(manifest), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as exc:
        raise UsageError(
            f"run: the manifest mapping holds a value YAML cannot write ({exc})"
        ) from None
    return read_yaml(Path(MAPPING_NAME), text)


def _run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _flags(parser: argparse.ArgumentParser, options: Mapping[str, Any]) -> list[str]:
    """Options as command-line arguments: True → `--flag`, False → `--no-flag` (or nothing),
    a list → the flag repeated, `set={"seed": 3}` → `--set seed=3`."""
    actions = {s: a for a in parser._actions for s in a.option_strings}
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        action = actions.get(flag)
        if action is None or flag in ("--help", "--json", "--debug"):
            raise UsageError(f"run: unknown option {name!r}")
        argv += _flag_values(flag, action, value, actions)
    return argv


def _flag_values(
    flag: str, action: argparse.Action, value: Any, actions: Mapping[str, argparse.Action]
) -> list[str]:
    if value is None:
        return []
    if action.nargs == 0:  # an on/off flag
        if value:
            return [flag]
        negative = "--no-" + flag.removeprefix("--")
        return [negative] if negative in actions else []
    if flag == "--set" and isinstance(value, Mapping):
        # JSON is YAML, which --set reads: the value keeps its Python type
        value = [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items()]
    values = value if isinstance(value, list | tuple) else [value]
    return [part for v in values for part in (flag, str(v))]
