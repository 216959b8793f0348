"""Which catalogue a run (or `validate`, or `models`) asks: the live one of its API when a
token is at hand and not `--offline`, the in-process simulator's with `--simulate`, else
none (cache and bundled data only)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import aiohttp

from batch_runner import catalog
from batch_runner.api.catalog import (
    Fetch,
    Listing,
    Resolution,
    fetch_entry,
    fetch_listing,
    resolve,
)
from batch_runner.api.client import RunComfyClient
from batch_runner.errors import AccountError, RemoteError
from batch_runner.settings import RunSettings

if TYPE_CHECKING:
    from batch_runner.catalog import SchemaFile

CATALOG_TIMEOUT = 10.0  # seconds per catalogue call: an unreachable one must not hold up a run


async def resolve_models(
    models: Iterable[str],
    settings: RunSettings,
    token: str | None,
    schema_file: SchemaFile | None = None,
) -> Resolution:
    """Each model's catalogue entry for a run with these settings (CONTRACT §2/§3)."""
    cache_base = None if settings.simulate else settings.api_base.rstrip("/")
    async with _live(settings, token) as client:
        listing: Listing | None = None
        if settings.simulate:  # the simulator is the API (and its prices), --offline or not
            fetch: Fetch | None = _simulated()
        elif client is not None:

            async def fetch(model: str) -> dict[str, Any] | None:
                return await fetch_entry(client, model)

            async def listing() -> list[dict[str, Any]]:
                return await fetch_listing(client, schemas=False)

        else:
            fetch = None
        return await resolve(
            models, fetch=fetch, api_base=cache_base, schema_file=schema_file, listing=listing
        )


async def list_models(
    settings: RunSettings,
    token: str | None,
    search: str | None,
    kind: str | None,
    category: str | None = None,
) -> tuple[list[catalog.CatalogEntry], list[str]]:
    """Every known model endpoint matching `search`, media `kind` and `category`: the live
    catalogue's when it can be read, else the bundled entries with the cached ones laid
    over them; and the warnings to print. `workflow`/`inference` endpoints are left out:
    the Model API does not run them."""
    base = settings.api_base.rstrip("/")
    by_id = dict(catalog.bundled())
    for model in by_id:
        cached = catalog.read_cached(base, model, max_age=None)
        if cached is not None:
            by_id[model] = _filled(cached, by_id[model])
    warnings = []
    async with _live(settings, token) as client:
        if client is not None:
            try:
                raws = await fetch_listing(client, search, category)
            except (RemoteError, AccountError) as exc:
                warnings.append(f"the live model catalogue could not be read ({exc}); bundled data")
            else:
                by_id = _laid_over(base, by_id, raws, whole=not search and not category)
    runnable = (e for e in by_id.values() if e.runnable)
    return catalog.search(runnable, search, kind, category), warnings


def _laid_over(
    base: str, by_id: dict[str, catalog.CatalogEntry], raws: list[dict[str, Any]], whole: bool
) -> dict[str, catalog.CatalogEntry]:
    """The live listing is the catalogue (each entry kept in the cache, a schema it lacks
    filled from the known entry): models it does not list are not offered; a whole listing's
    ids become the index that tells an unknown model offline."""
    live = {}
    for raw in raws:
        catalog.write_cached(base, raw)
        entry = catalog.entry_from(raw, "live")
        if entry is not None:
            live[entry.model_id] = _filled(entry, by_id.get(entry.model_id))
    if whole and live:
        catalog.write_index(base, raws)
    return live


async def model_entry(
    model: str, settings: RunSettings, token: str | None
) -> tuple[catalog.CatalogEntry | None, list[str], str | None]:
    """One model's entry as `run` would use it (live, cached, bundled), the warnings, and why
    the catalogue refuses it (unknown; a workflow endpoint still has its entry shown)."""
    found = await resolve_models([model], settings, token)
    return found.catalogue.get(model), found.warnings, found.refused.get(model)


def _filled(entry: catalog.CatalogEntry, under: catalog.CatalogEntry | None):
    if entry.input_schema is None and under is not None:
        return dataclasses.replace(entry, input_schema=under.input_schema)
    return entry


@contextlib.asynccontextmanager
async def _live(settings: RunSettings, token: str | None) -> AsyncIterator[RunComfyClient | None]:
    """A client of the live catalogue, or None when it is not to be asked."""
    if settings.offline or settings.simulate or not token:
        yield None
        return
    async with aiohttp.ClientSession() as session:
        yield RunComfyClient(session, settings.api_base, token, timeout=CATALOG_TIMEOUT)


def _simulated() -> Fetch:
    """The catalogue of the simulator a `--simulate` run starts (the same entries, in-process)."""
    from batch_runner.simulator import SimConfig
    from batch_runner.simulator.models import SimCatalog

    sim = SimCatalog(SimConfig())

    async def fetch(model: str) -> dict[str, Any] | None:
        return sim.entry(model)

    return fetch
