"""Money before the first submit (CONTRACT §6): price every job from the catalogue, print the
estimate, read the balance, and open the `--max-cost` ledger where the state left it."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from batch_runner.api.catalog import prices_for, with_retries
from batch_runner.errors import AccountError, ApiError
from batch_runner.jobs import WITHOUT_REQUEST
from batch_runner.money import Estimate, Priced, dollars, estimate, fitting, job_price, usd
from batch_runner.run.budget import Budget
from batch_runner.run.stage_money import StageForecast, StageRow, later_cost
from batch_runner.run.uncertain import sends
from batch_runner.store.costs import AT_API, budget_start, cost_summary
from batch_runner.words import plural

if TYPE_CHECKING:
    from batch_runner.api.client import RunComfyClient
    from batch_runner.catalog import CatalogEntry
    from batch_runner.jobs import JobSpec
    from batch_runner.run.progress import Tally
    from batch_runner.settings import RunSettings
    from batch_runner.store.state import StateStore


async def prepare(
    store: StateStore,
    client: RunComfyClient,
    settings: RunSettings,
    base: str,
    tally: Tally,
    resolved: Mapping[str, CatalogEntry | None] | None = None,
    skip: Collection[int] = frozenset(),
) -> Budget:
    """Estimates stored per job, the estimate said, the balance checked; the run's budget.
    `tally` starts from what the state says was spent and the run's whole estimate. `resolved`:
    the catalogue entries validation already resolved (Expansion.entries); only the models
    of the state it lacks are asked for. `skip`: new jobs this run leaves pending (--pilot)."""
    models = store.model_counts()
    forecast = StageForecast.of(store)
    wanted = set(models) | (forecast.models() if forecast else set())
    live = None if settings.offline and not settings.simulate else client  # --offline: cache only
    entries = await _entries(live, base, wanted, resolved, cache=not settings.simulate)
    todo, prices, changed, at_api = Estimate(), [], [], 0
    # without a pipeline's forecast (it reads whole records), the few columns pricing needs
    rows = store.price_rows() if forecast is None else store.iter_jobs(with_files=False)
    for job in rows:
        price = job_price(entries.get(job.model), job.inputs)
        if price != job.estimate_usd:
            changed.append((job.index, price))
        if job.index in skip:
            continue
        to_send = job.state in WITHOUT_REQUEST and sends(settings, job.state, job.duplicates)
        if to_send:
            todo.add(job.model, price)
            prices.append(price)
        elif job.state in AT_API:
            at_api += 1
        if forecast is not None:
            forecast.add(job, price, to_send=to_send, at_api=job.state in AT_API)
    if changed:
        store.set_estimates(changed)
    cost = cost_summary(store)
    tally.spent, tally.estimated = cost["spent_usd"], cost["estimated_usd"]
    spent, reserved = budget_start(store.money_jobs())
    budget = Budget(settings.max_cost, spent, reserved)
    rows = forecast.finish(entries) if forecast is not None else {}
    later = later_cost(rows)
    if todo.jobs or later[1]:
        resumed = todo.jobs < sum(row["jobs"] for row in models.values())
        if todo.jobs:
            _say_estimate(todo, prices, budget, resumed=resumed, at_api=at_api)
        _say_stages(rows, todo, later)
        if settings.balance_check:
            account = base if settings.simulate else settings.balance_base
            await check_balance(client, account, todo, budget, later)
    return budget


def _say_stages(rows: dict[str, StageRow], todo: Estimate, later: tuple[float, int, int]) -> None:
    """A pipeline's stages, later ones at their most, and the whole chain's most."""
    if not rows:
        return
    _say("pipeline stages (later ones at their most):")
    for name, row in rows.items():
        _say(row.line(name))
    if later[1]:
        unknown = todo.unknown + later[2]
        note = f" (unknown for {plural(unknown, 'job')})" if unknown else ""
        _say(f"whole chain: up to {dollars(usd(todo.total + later[0]))}{note}")


def _say_estimate(
    todo: Estimate, prices: list[float | None], budget: Budget, *, resumed: bool, at_api: int
) -> None:
    """The estimate of the jobs to send and, under a budget, how many of them fit in what is
    left of it once the money already spent (and reserved by jobs at the API) is counted."""
    what = f"the {plural(todo.jobs, 'job')} left to send" if resumed else None
    line = todo.text(what)
    if at_api:
        line += f" (besides {plural(at_api, 'job')} already at the API)"
    _say(line)
    for line in todo.model_lines():
        _say(line)
    if budget.limit is None:
        return
    n, cost = fitting(prices, max(0.0, usd(budget.limit - budget.used)))
    head = f"--max-cost {dollars(budget.limit)}"
    if budget.used:
        spent = "spent or committed to jobs at the API" if budget.reserved else "spent"
        head += f", {dollars(budget.used)} of it already {spent}"
    line = f"{head}: about {n} of {plural(todo.jobs, 'job')} fit"
    if n:
        line += f" ({dollars(cost)})"
    if todo.unknown:
        line += (
            f"; {plural(todo.unknown, 'job')} without a known price never "
            f"{'fits' if todo.unknown == 1 else 'fit'} a budget (--no-max-cost drops it)"
        )
    _say(line)


async def check_balance(
    client: RunComfyClient,
    account_base: str,
    todo: Estimate,
    budget: Budget,
    later: tuple[float, int, int] = (0.0, 0, 0),
) -> None:
    """Stop (exit 3) when the balance is below the smaller of the estimate and what is left of
    the budget; a balance that cannot be read is a warning (the API refuses what it cannot
    cover). `later`: a pipeline's children still to be made (stage_money.later_cost), whose
    most cost is part of the estimate."""
    room = None if budget.limit is None else max(0.0, usd(budget.limit - budget.used))
    whole = usd(todo.total + later[0])
    need = whole if room is None else min(whole, room)
    if need <= 0:
        return
    try:
        balance = await with_retries(lambda: client.balance(account_base))
    except ApiError as exc:
        _say(f"warning: could not read the balance at {account_base} ({exc.message}); going on")
        return
    if balance < need:
        jobs = plural(todo.jobs, "job")
        what = f"the estimated cost {dollars(todo.total)} of the {jobs} to submit"
        if later[1]:
            what = f"the estimated cost up to {dollars(whole)} of the whole pipeline"
        if todo.unknown + later[2]:
            what += f" (unknown for {todo.unknown + later[2]} of them)"
        if budget.limit is not None:
            what += f" and --max-cost {dollars(budget.limit)}"
            if budget.used:
                what += f" ({dollars(room)} of it left)"
        raise AccountError(
            f"balance {dollars(balance)} is below {what}; nothing was submitted. Top up, lower "
            "--max-cost, or skip this check with --no-balance-check"
        )


async def estimate_specs(
    specs: list[JobSpec],
    api_base: str,
    token: str | None,
    resolved: Mapping[str, CatalogEntry | None] | None = None,
    priced: Priced | None = None,
) -> tuple[Estimate, list[float | None], dict[str, CatalogEntry | None]]:
    """What `validate` says: the jobs' estimate from the catalogue of the API they would run
    against (asked only with a token), else the cache, else unknown: the entries validation
    resolved (`resolved`), the others asked for now. Nothing is submitted. `priced`: these
    jobs already priced from `resolved` as they were checked (no pass over them here when
    `resolved` has every model they use)."""
    import aiohttp

    from batch_runner.api.client import RunComfyClient

    counted = getattr(specs, "models", None)  # a JobStream knows them: no pass over the jobs
    models = set(counted) if counted is not None else {spec.model for spec in specs}
    known = resolved or {}
    if priced is not None and priced.estimate.jobs == len(specs) and models <= known.keys():
        return priced.estimate, priced.prices, {m: e for m, e in known.items() if m in models}
    if token and models - (resolved or {}).keys():
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            client = RunComfyClient(session, api_base, token)
            entries = await _entries(client, api_base, models, resolved)
    else:
        entries = await _entries(None, api_base, models, resolved)
    est, prices = estimate(((s.model, s.inputs) for s in specs), entries)
    return est, prices, entries


async def _entries(
    client: RunComfyClient | None,
    base: str,
    models: Iterable[str],
    resolved: Mapping[str, CatalogEntry | None] | None,
    *,
    cache: bool = True,
) -> dict[str, CatalogEntry | None]:
    """Each model's catalogue entry: the one validation resolved, else asked for now."""
    wanted = set(models)
    entries = {m: e for m, e in (resolved or {}).items() if m in wanted}
    missing = wanted - entries.keys()
    if missing:
        warnings: list[str] = []
        entries |= await prices_for(client, base, missing, cache=cache, warn=warnings)
        for line in warnings:
            _say(f"warning: {line}; its price is unknown")
    return entries


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
