"""The one decision of which catalogue entry a model uses (api/catalog.resolve), with the live
catalogue given as a plain async function (the HTTP calls are tested through the CLI)."""

from __future__ import annotations

from batch_runner import catalog
from batch_runner.api.catalog import resolve
from batch_runner.catalog import SchemaFile
from batch_runner.errors import TransportError

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
BASE = "http://127.0.0.1:1"
OWN = {"type": "object", "required": ["n"]}


def live(answers, asked):
    async def fetch(model):
        asked.append(model)
        answer = answers.get(model)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return fetch


async def test_precedence_schema_file_live_bundled_fallback_none():
    asked = []
    fetch = live({SEEDREAM: {"model_id": SEEDREAM, "base_price_usd": 0.03}}, asked)
    given = catalog.CatalogEntry("a/b/c", input_schema=OWN, source="schema-file")
    schema_file = SchemaFile("s.json", default=OWN, entries={"a/b/c": given})
    found = await resolve(
        [SEEDREAM, "a/b/c", "x/y"], fetch=fetch, api_base=BASE, schema_file=schema_file
    )
    assert asked == [SEEDREAM, "x/y"]  # a model the file gives is not asked for
    seedream = found.entries[SEEDREAM]
    # a live entry without a schema keeps its price and takes the bundled schema
    assert seedream.source == "live" and seedream.base_price_usd == 0.03
    assert seedream.input_schema == catalog.bundled()[SEEDREAM].input_schema
    assert found.entries["a/b/c"] is given
    # the live catalogue says it does not know x/y: refused before anything is sent
    assert found.entries["x/y"] is None and found.refused["x/y"].startswith("unknown model")
    # prices come from the catalogue's entries alone, for the models it was asked about
    assert found.catalogue == {SEEDREAM: seedream, "x/y": None}
    offline = await resolve(["x/y"], fetch=None, api_base=None, schema_file=schema_file)
    assert offline.entries["x/y"].input_schema == OWN  # the single schema: models none knows
    assert offline.refused == {}
    assert (await resolve(["x/y"], fetch=None, api_base=None)).entries == {"x/y": None}


async def test_cached_for_a_day_then_used_when_the_catalogue_is_down():
    asked = []
    changed = {"type": "object", "properties": {"prompt": {"type": "string"}}}
    fetch = live({SEEDREAM: {"model_id": SEEDREAM, "input_schema": changed}}, asked)
    found = await resolve([SEEDREAM], fetch=fetch, api_base=BASE)
    assert found.entries[SEEDREAM].input_schema == changed and len(found.notes) == 1
    again = await resolve([SEEDREAM], fetch=fetch, api_base=BASE)
    assert asked == [SEEDREAM] and again.entries[SEEDREAM].source == "cache"
    down = live({"q/r/s": TransportError("cannot connect", sent=False)}, asked)
    found = await resolve([SEEDREAM, "q/r/s"], fetch=down, api_base=BASE)
    assert found.entries[SEEDREAM].input_schema == changed
    assert found.entries["q/r/s"] is None and "could not be read" in found.warnings[0]
