"""The live model catalogue, and the one decision of which entry each model of a run uses.

Schemas (`resolve`, CONTRACT §2/§3): a `--schema` file's entry for the model > the live
catalogue's (asked once per model per run, kept a day in the per-API-base cache of
`batch_runner.catalog`) > the cache (any age, when the live one cannot be asked) > the bundled
catalogue > the `--schema` file's single schema > none. Prices (CONTRACT §6) come from the
same live / cached / bundled entries: `resolve` keeps each model's (`Resolution.catalogue`) and
a run or `validate` prices its jobs by them; `prices_for` asks only for the models no
resolution covered (a `--schema` file's, a resumed run's), so no entry is fetched twice.

Models are refused before anything is sent (`Resolution.refused`) whenever the catalogue can
say so: the live catalogue (or the index of its last whole listing, while fresh) does not
list the model, or lists it as a `workflow`/`inference` endpoint the Model API does not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from batch_runner import catalog
from batch_runner.api.policy import Action, classify, retry_delay
from batch_runner.catalog import CatalogEntry, bundled_entry, entry_from, read_cached, write_cached
from batch_runner.errors import AccountError, ApiError, RemoteError

if TYPE_CHECKING:
    from batch_runner.api.client import RunComfyClient
    from batch_runner.catalog import SchemaFile

T = TypeVar("T")
MAX_TRIES = 4  # a catalogue that keeps failing leaves the price unknown, it does not stop the run

Fetch = Callable[[str], Awaitable["dict[str, Any] | None"]]
Listing = Callable[[], Awaitable["list[dict[str, Any]]"]]  # the whole live catalogue
PAGE = 500  # the most the catalogue gives per page
MAX_PAGES = 100


@dataclasses.dataclass
class Resolution:
    """Each model's entry (None: in no catalogue), and what the user should be told once."""

    entries: dict[str, catalog.CatalogEntry | None]
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    # each model's entry from the catalogue alone (live, cached or bundled; None: in none), for
    # the models it was looked up for (not those a --schema file gives): their jobs' prices
    catalogue: dict[str, catalog.CatalogEntry | None] = dataclasses.field(default_factory=dict)
    # models the catalogue says cannot be run (unknown, or not a model endpoint): the problem
    refused: dict[str, str] = dataclasses.field(default_factory=dict)

    def schemas(self) -> dict[str, dict[str, Any] | None]:
        return {m: e.input_schema if e else None for m, e in self.entries.items()}


async def fetch_entry(client: RunComfyClient, model: str) -> dict[str, Any] | None:
    """The live catalogue object of `model`, None when the catalogue does not know it."""
    try:
        answer = await with_retries(lambda: client.model(model))
    except ApiError as exc:
        if exc.status == 404 or exc.error_code in (400001, 404001):
            return None
        raise
    return answer if answer.get("model_id") == model else None


async def fetch_listing(
    client: RunComfyClient,
    search: str | None = None,
    category: str | None = None,
    *,
    schemas: bool = True,
) -> list[dict[str, Any]]:
    """Every matching live catalogue object, page after page until `total` is reached (a
    short page ends it too, for a catalogue that does not say its total). The media kind is
    never a query: `kind=` filters the endpoint kind (CONTRACT §1)."""
    out: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        page_call = functools.partial(
            client.catalog_page,
            search=search,
            category=category,
            schemas=schemas,
            limit=PAGE,
            offset=len(out),
        )
        answer = await with_retries(page_call)
        page = catalog.entries_from_answer(answer)
        out += page
        total = answer.get("total") if isinstance(answer, dict) else None
        if isinstance(total, int) and not isinstance(total, bool):
            if len(out) >= total or not page:
                break
        elif not page or len(page) < PAGE:
            break
    return out


async def resolve(
    models: Iterable[str],
    *,
    fetch: Fetch | None,
    api_base: str | None,
    schema_file: SchemaFile | None = None,
    listing: Listing | None = None,
) -> Resolution:
    """Each model's entry for this run. `fetch` asks the live catalogue (None: offline);
    `api_base` names the cache (None: no cache, e.g. the in-process simulator); `listing`
    reads the whole live catalogue, asked only to suggest the ids nearest an unknown one."""
    models = list(dict.fromkeys(models))
    given = schema_file.entries if schema_file else {}
    result = Resolution({})
    live, missing = await _ask_live([m for m in models if m not in given], fetch, api_base, result)
    # offline, the index of the last whole listing (while fresh) knows which ids exist
    index = catalog.read_index(api_base) if fetch is None and api_base is not None else None
    for model in models:
        entry = given.get(model)
        if entry is None:
            entry = None if model in missing else _known(model, live.get(model), api_base, result)
            result.catalogue[model] = entry
            refusal = _refusal(model, entry, model in missing, index)
            if refusal is not None:
                result.refused[model] = refusal
                entry = None
            elif entry is None and schema_file is not None:
                entry = schema_file.fallback(model)
        result.entries[model] = entry
    if _UNKNOWN in result.refused.values():
        ids = await _ids(api_base, listing)
        for model, refusal in result.refused.items():
            if refusal == _UNKNOWN:
                result.refused[model] = catalog.unknown_model_text(model, ids)
    return result


_UNKNOWN = "unknown model"  # a refusal whose did-you-mean is still to be found


def _refusal(
    model: str,
    entry: CatalogEntry | None,
    missing: bool,
    index: dict[str, str | None] | None,
) -> str | None:
    """Why the catalogue says `model` cannot be run, None when it may be."""
    kind = entry.endpoint_kind if entry is not None else None
    if entry is None and index is not None:
        if model not in index:
            return _UNKNOWN
        kind = index[model]
    if kind not in (None, "model"):
        return catalog.not_runnable_text(str(kind))
    return _UNKNOWN if missing else None


async def _ids(api_base: str | None, listing: Listing | None) -> list[str]:
    """The ids a did-you-mean chooses from: the bundled ones and the live catalogue's (read
    once, and kept as the index, when no fresh index has them)."""
    if listing is not None and api_base is not None and catalog.read_index(api_base) is None:
        with contextlib.suppress(RemoteError, AccountError):  # suggest from what is known
            catalog.write_index(api_base, await listing())
    return catalog.known_ids(api_base)


async def _ask_live(
    models: list[str], fetch: Fetch | None, api_base: str | None, result: Resolution
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The live objects of the models without a fresh cached entry (written to the cache),
    and the models the live catalogue answered it does not know."""
    if fetch is None:
        return {}, set()
    todo = [m for m in models if api_base is None or catalog.read_cached(api_base, m) is None]
    answers = await asyncio.gather(*(fetch(m) for m in todo), return_exceptions=True)
    failed = [a for a in answers if isinstance(a, BaseException)]
    for exc in failed:
        if not isinstance(exc, RemoteError | AccountError):
            raise exc  # a bug of ours, not an unreachable catalogue
    if failed:
        result.warnings.append(
            f"the live model catalogue could not be read ({failed[0]}); "
            "using cached or bundled schemas and prices"
        )
    live = {m: raw for m, raw in zip(todo, answers, strict=True) if isinstance(raw, dict)}
    missing = {m for m, raw in zip(todo, answers, strict=True) if raw is None}
    if api_base is not None:
        for raw in live.values():
            catalog.write_cached(api_base, raw)
    return live, missing


def _known(
    model: str, raw: dict[str, Any] | None, api_base: str | None, result: Resolution
) -> catalog.CatalogEntry | None:
    """The live (or cached) entry over the bundled one; the bundled schema fills a live entry
    that has none. A live schema that differs from the bundled one is noted."""
    bundled = catalog.bundled_entry(model)
    entry = catalog.entry_from(raw, "live") if raw else None
    if entry is None and api_base is not None:
        entry = catalog.read_cached(api_base, model, max_age=None)
    if entry is None:
        return bundled
    if entry.input_schema is None and bundled is not None:
        return dataclasses.replace(entry, input_schema=bundled.input_schema)
    if bundled is not None and _inputs(bundled.input_schema) != _inputs(entry.input_schema):
        result.notes.append(
            f"model {model}: the live catalogue's input schema differs from the bundled one; "
            "using the live one"
        )
    return entry


def _inputs(schema: dict[str, Any] | None) -> Any:
    """A schema without its sample values (`examples`: a live media field's sample URL)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return schema
    props = {
        name: {k: v for k, v in prop.items() if k != "examples"} if isinstance(prop, dict) else prop
        for name, prop in schema["properties"].items()
    }
    return schema | {"properties": props}


# --- prices (CONTRACT §6) ---------------------------------------------------------------------


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
    return entry or bundled_entry(model)


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
