"""A whole run: lock the directory, sync the state, start the workers, stop cleanly, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from batch_runner.api.client import SUBMIT_TIMEOUT, RunComfyClient
from batch_runner.api.deadlines import Deadlines
from batch_runner.api.limits import RateLimiter
from batch_runner.catalog import CatalogEntry
from batch_runner.errors import AccountError, StateError, UsageError
from batch_runner.jobs import JobSpec, JobState
from batch_runner.outputs.download import download
from batch_runner.outputs.hosts import HostPolicy
from batch_runner.outputs.metadata import OUTPUT_DIRS, metadata_whole, rebuild_metadata
from batch_runner.report.marked import write_marks
from batch_runner.run.archived import archive_finished, take_archived
from batch_runner.run.budget import Budget
from batch_runner.run.children import Children, record_stages
from batch_runner.run.lifecycle import JobRunner
from batch_runner.run.lock import RunLock
from batch_runner.run.parent_urls import ParentUrls
from batch_runner.run.pilot import hold_back, pilot_result
from batch_runner.run.polling import PollPlanner
from batch_runner.run.pricing import prepare
from batch_runner.run.progress import Progress, Tally
from batch_runner.run.scheduler import Scheduler, Stop, plan
from batch_runner.run.signals import Hooks, install_signals, remove_signals
from batch_runner.run.uncertain import sends
from batch_runner.settings import DEFAULT_API_BASE, REAL_DOWNLOAD_HOSTS, RunSettings
from batch_runner.store.state import StateStore
from batch_runner.words import plural

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
SIM_DEMO_LATENCY = (1.0, 3.0)


@dataclass
class RunResult:
    """What a run ends with: its exit code (as the command line's), the `status --json` object
    and the run directory."""

    exit_code: int
    summary: dict[str, Any]
    run_dir: Path
    cancelled: bool = False  # stopped by `batch-runner cancel` (an exit 1 of its own kind)


@dataclass
class RunInput:
    run_dir: Path
    settings: RunSettings
    token: str | None
    specs: list[JobSpec] | None = None  # None: resume from the state alone
    manifest: Path | None = None
    # the catalogue entries validation resolved per model (Expansion.entries): prices from them
    entries: dict[str, CatalogEntry | None] | None = None
    # the manifest's options (cli/layers.plain): remembered, so that a later run of the same
    # manifest gives anew only the ones that changed
    manifest_options: dict[str, Any] | None = None
    stages: list[Any] | None = None  # a pipeline's stage plans (manifest/stages.py)
    pilot_seed: Any = None  # the manifest's `seed:` (--pilot picks with it; None: 0)


def open_run(inp: RunInput, lock: RunLock) -> StateStore:
    """Lock the directory and bring its state in line with the manifest (nothing is sent)."""
    try:
        inp.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"{inp.run_dir}: cannot create run directory ({exc.strerror})") from None
    lock.acquire()
    # deferred: the set-up commits wait for no disk; the first job event's commit (or
    # `sync_commits` in _execute, before any job is taken) makes them durable with it
    store = StateStore.open(inp.run_dir, create=inp.specs is not None, deferred=True)
    try:
        edited = 0
        if inp.specs is not None:
            added, missing, edited = store.sync(inp.specs)  # one pass: a JobStream is made once
            meta = {"manifest": str(inp.manifest)}
            if inp.manifest is not None:  # runs seeded from jobs alone have no manifest file
                meta["manifest_path"] = str(Path(inp.manifest).resolve())
            store.set_meta(meta)
            _copy_manifest(inp)
            if inp.stages:  # a pipeline: stages kept for resume, children of done parents made
                missing -= record_stages(store, inp.stages)
            if added or missing:
                kept = f", {missing} not in manifest (kept)" if missing else ""
                _say(f"{added} new {'job' if added == 1 else 'jobs'}{kept}")
            if edited:
                jobs = plural(edited, "job")
                _say(f"meta changed for {jobs}: metadata.jsonl updated (nothing sent)")
        elif (children := Children.of(store)) is not None:
            children.catch_up()  # resume: a done parent's children, should any be missing
        _recover(store, inp.run_dir, rebuild=edited > 0)
    except BaseException:
        store.close()
        raise
    return store


def _copy_manifest(inp: RunInput) -> None:
    if inp.manifest is None:
        return
    dest = inp.run_dir / f"manifest{inp.manifest.suffix}"
    try:
        if dest.resolve() != inp.manifest.resolve():
            shutil.copyfile(inp.manifest, dest)
    except OSError as exc:
        raise StateError(f"{dest}: cannot copy the manifest ({exc.strerror})") from None


def _recover(store: StateStore, run_dir: Path, *, rebuild: bool = False) -> None:
    """Repair what a crash can leave: submits in flight, partial files, short metadata
    (`rebuild`: metadata.jsonl is rewritten anyway, e.g. after meta edits)."""
    store.move_all(
        JobState.SUBMITTING, JobState.UNCERTAIN, "the run stopped during submit; the job may exist"
    )
    stages = [p["name"] for p in store.stage_plans()] if store._has_lineage() else []
    for folder in (f"{stage}/{f}" if stage else f for stage in ["", *stages] for f in OUTPUT_DIRS):
        if (run_dir / folder).is_dir():
            for part in (run_dir / folder).rglob("*.part"):
                with contextlib.suppress(OSError):
                    part.unlink()
    if rebuild or not metadata_whole(run_dir, store.file_count(), store.files_under):
        rebuild_metadata(run_dir, store.iter_jobs())


async def execute(inp: RunInput, store: StateStore) -> RunResult:
    """Submit, poll and download until every job is finished or the run is stopped."""
    settings, started = inp.settings, time.monotonic()
    tally, stop = Tally(), Stop()
    round_start = _retry_failed(store) if settings.retry_failed else {}
    # before planning and pricing: jobs the archive holds are done, never sent nor estimated
    archived = take_archived(store, inp.run_dir, settings)
    held = hold_back(store, settings.pilot, inp.pilot_seed, _say)
    todo = plan(store, inp.run_dir, sends=partial(sends, settings), skip=held)
    new = store.count_new() - len(held)
    if new > settings.max_jobs:
        raise UsageError(
            f"this run would submit {new} new jobs, more than --max-jobs {settings.max_jobs}; "
            "raise --max-jobs to go ahead (nothing was submitted)"
        )
    _remember(inp, store)
    _warn_concurrency(settings.concurrency)
    # the handlers go in before the first request: a Ctrl-C while the catalogue, the prices or
    # the balance are asked for stops the run before anything is submitted (never lost)
    hooks = Hooks(waiting=lambda: len(todo), say=_say)
    install_signals(stop, asyncio.current_task(), hooks)
    try:
        result = await _execute(
            inp, store, (todo, new, held), round_start, stop, tally, hooks, started
        )
        archive_finished(archived, store, inp.run_dir)  # every done job, for later runs
        return pilot_result(result, held)
    except asyncio.CancelledError:
        if not stop.signals:
            raise  # not ours
        raise KeyboardInterrupt from None  # stopped while setting up: nothing was submitted
    finally:
        remove_signals()


async def _execute(
    inp: RunInput,
    store: StateStore,
    work: tuple[list, int, set[int]],  # the jobs to take, how many new, the new ones held back
    round_start: dict[int, int],
    stop: Stop,
    tally: Tally,
    hooks: Hooks,
    started: float,
) -> RunResult:
    settings = inp.settings
    todo, new, held = work
    async with _api(settings, inp.token) as (base, token), _sessions(settings) as sessions:
        deadlines = Deadlines()  # one timer for the time limits of every call in flight
        client = RunComfyClient(
            sessions[0],
            base,
            token,
            limiter=RateLimiter(settings.rate),
            deadlines=deadlines,
            submit_timeout=SUBMIT_TIMEOUT,
        )
        fetch = partial(
            download,
            sessions[1],
            hosts=_hosts(settings, base),
            max_bytes=settings.max_file_bytes,
            deadlines=deadlines,
        )
        try:
            budget = await prepare(store, client, settings, base, tally, inp.entries, held)
        except AccountError as exc:  # nothing new is sent; jobs already at the API finish
            stop.fail(exc)
            budget = Budget(None)
        except asyncio.CancelledError:  # Ctrl-C while the prices or the balance were asked
            if not stop.signals:
                raise  # not ours
            asyncio.current_task().uncancel()  # nothing new is sent; jobs at the API finish
            budget = Budget(None)
        store.sync_commits()  # from here on, every commit is on disk before the run acts on it
        children = Children.of(store)
        if children is not None:
            await children.price(client, base, settings, inp.entries)
            where = (inp.run_dir.resolve(), settings.max_inline_mb, children.other_run)
            children.urls = ParentUrls(store, client, *where)
        runner = JobRunner(
            store,
            client,
            fetch,
            settings,
            inp.run_dir.resolve(),
            PollPlanner(),
            tally,
            stop,
            random.Random(),
            budget,
            round_start=round_start,
            children=children,
        )
        progress = Progress(
            tally,
            total=len(todo),
            to_submit=new,
            enabled=settings.progress,
            auto=settings.tqdm_auto,
            eta=store.eta,
        )
        try:
            scheduler = Scheduler(runner.run, store.jobs_at, stop.is_set, settings.concurrency)
            if children is not None:  # children join the pool as their parents finish
                scheduler.streaming = True
                # the progress display's totals grow with them
                children.enqueue = lambda todo: tally.count_added(scheduler.add(todo))
            hooks.waiting, hooks.say = (lambda: scheduler.waiting), progress.say
            hooks.started = True
            cut_short = stop.signals >= 2 or await _run_workers(scheduler, todo)
        finally:
            runner.metadata.close()
        progress.close()
        store.flush()
    if runner.metadata_stale:
        rebuild_metadata(inp.run_dir, store.iter_jobs())
    write_marks(inp.run_dir, store, report=False)  # set in `serve` meanwhile (report: _finish)
    result = _finish(inp, store, stop, cut_short, time.monotonic() - started)
    if round_start:
        result.summary["retried_failed"] = len(round_start)
    return result


def _remember(inp: RunInput, store: StateStore) -> None:
    """The options this run uses, for later runs and resumes of the directory (cli/layers.py);
    a run refused before this point (--max-jobs) leaves what was remembered as it was."""
    meta: dict[str, Any] = {"settings": inp.settings.stored()}
    if inp.manifest_options is not None:
        meta["manifest_options"] = inp.manifest_options
    store.set_meta(meta)


def _retry_failed(store: StateStore) -> dict[int, int]:
    """--retry-failed: failed jobs wait for a new round of attempts (their old request_ids
    stay beside the new ones); returns each one's attempts so far, where its round starts."""
    rounds = store.attempts_in(JobState.FAILED)
    if rounds:
        store.move_all(JobState.FAILED, JobState.PENDING, "--retry-failed: a new round")
        _say(f"retrying {len(rounds)} failed jobs (--retry-failed)")
    return rounds


PLAUSIBLE_CONCURRENCY = 1000  # more jobs in flight than an account is likely to be allowed


def _warn_concurrency(concurrency: int) -> None:
    """A concurrency no account or machine carries only queues jobs and slows every answer."""
    import resource

    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if concurrency > PLAUSIBLE_CONCURRENCY or concurrency * 2 > files:
        _say(
            f"warning: --concurrency {concurrency} is more jobs in flight than an account "
            f"or this machine (open-file limit {files}) plausibly carries; the extra jobs only "
            "wait in the API's queue (submits stay bounded, so nothing is sent twice)"
        )


async def _run_workers(scheduler: Scheduler, todo: list) -> bool:
    """Run the pool (under the signal handlers); True when a second signal cut it short."""
    try:
        await scheduler.run(todo)
    except asyncio.CancelledError:
        return True
    return False


def _finish(
    inp: RunInput, store: StateStore, stop: Stop, cut_short: bool, wall: float
) -> RunResult:
    summary = store.summary()
    summary["wall_seconds"] = round(wall, 3)
    summary["run_dir"] = str(inp.run_dir)
    _write_report(inp.run_dir, store)
    counts = summary["counts"]
    if cut_short or stop.interrupted:
        code = EXIT_INTERRUPTED
    elif stop.fatal is not None:
        code = stop.fatal.exit_code  # 3 for the account, 2 for the run directory
        summary["error"] = str(stop.fatal)
    elif any(counts.get(s, 0) for s in ("failed", "cancelled", "uncertain", "pending")):
        code = EXIT_FAILED
    else:
        code = EXIT_OK
    return RunResult(code, summary, inp.run_dir, cancelled=stop.cancelled)


def _write_report(run_dir: Path, store: StateStore) -> None:
    from batch_runner.report.page import write_report

    try:
        write_report(run_dir, store, title=run_dir.name)
    except OSError as exc:
        _say(f"warning: could not write report.html ({exc.strerror})")


@contextlib.asynccontextmanager
async def _api(settings: RunSettings, token: str | None) -> AsyncIterator[tuple[str, str | None]]:
    if not settings.simulate:
        yield settings.api_base.rstrip("/"), token
        return
    from batch_runner.simulator import SimConfig, start_simulator

    async with start_simulator(SimConfig(latency=SIM_DEMO_LATENCY)) as sim:
        _say(
            f"using the built-in simulator at {sim.base_url} "
            "(no real jobs; made-up prices, nothing charged)"
        )
        yield sim.base_url, sim.config.token


@contextlib.asynccontextmanager
async def _sessions(settings: RunSettings) -> AsyncIterator[tuple[aiohttp.ClientSession, ...]]:
    limit = max(64, settings.concurrency * 2)

    def session() -> aiohttp.ClientSession:
        # no cookies: the API sets none, presigned file URLs need none
        connector = aiohttp.TCPConnector(limit=limit)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    # two sessions: the API one never carries file traffic, the file one never carries the token
    async with session() as api, session() as files:
        yield api, files


def _hosts(settings: RunSettings, base: str) -> HostPolicy:
    extra = list(settings.allow_download_host)
    if not settings.simulate and base.rstrip("/") == DEFAULT_API_BASE:
        return HostPolicy(REAL_DOWNLOAD_HOSTS + extra, require_https=True)
    host = urlsplit(base).hostname or ""
    return HostPolicy([host, *extra])


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
