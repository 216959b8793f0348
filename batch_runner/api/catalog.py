"""Prices and schemas from the live catalogue (CONTRACT §1, §6): `GET /v1/models/{model}` per
model, kept in the per-API-base cache of `batch_runner.catalog` for a day; the cache (even an
old one) or the bundled catalogue when the API cannot say. One place for "which entry does
this run use for model M", for the estimate and (later) the schema resolution alike.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from batch_runner.api.policy import Action, classify, retry_delay
from batch_runner.catalog import CatalogEntry, bundled, entry_from, read_cached, write_cached
from batch_runner.errors import AccountError, ApiError

T = TypeVar("T")
MAX_TRIES = 4  # a catalogue that keeps failing leaves the price unknown, it does not stop the run


class ModelSource(Protocol):
    async def model(self, model: str) -> dict: ...


async def prices_for(
    client: ModelSource | None,
    api_base: str,
    models: Iterable[str],
    *,
    cache: bool = True,
    warn: list[str] | None = None,
) -> dict[str, CatalogEntry | None]:
    """The catalogue entry of each model (None when no catalogue knows it).

    `client` None: the cache and the bundled catalogue only (no token, or offline). `cache`
    False: the live answer is neither read from nor kept in the cache (an in-process
    simulator's port changes every run). Problems asking the API become lines in `warn`."""
    names = sorted(set(models))
    found = await asyncio.gather(*(_entry(client, api_base, m, cache, warn) for m in names))
    return dict(zip(names, found, strict=True))


async def _entry(
    client: ModelSource | None, api_base: str, model: str, cache: bool, warn: list[str] | None
) -> CatalogEntry | None:
    entry = read_cached(api_base, model) if cache else None
    if entry is None and client is not None:
        raw = await _ask(client, model, warn)
        if raw is not None:
            if cache:
                write_cached(api_base, raw)
            entry = entry_from(raw, "live")
    if entry is None and cache:
        entry = read_cached(api_base, model, max_age=None)  # stale beats nothing
    return entry or bundled().get(model)


async def _ask(client: ModelSource, model: str, warn: list[str] | None) -> dict | None:
    try:
        return await with_retries(lambda: client.model(model))
    except (ApiError, AccountError) as exc:  # the run itself says what a bad token means
        if warn is not None:
            warn.append(f"{model}: the live catalogue did not answer ({exc})")
    return None


async def with_retries(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, made again (up to MAX_TRIES in all) after a 429, a 5xx or a dropped
    connection; the last error is raised. For the calls before a run's first submit."""
    rng = random.Random()
    for attempt in range(1, MAX_TRIES):
        try:
            return await call()
        except ApiError as exc:
            if classify(exc, "poll").action is not Action.RETRY:
                raise
            await asyncio.sleep(retry_delay(exc, attempt, rng))
    return await call()
