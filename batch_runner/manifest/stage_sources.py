"""A later stage's several `{from:}` fields (CONTRACT §3 Pipelines): a first-last-frame model
taking two stills, a video edit taking a clip and the still it came from, a model taking a
video and a sound.

The stages they name must lie on one chain: the deepest named stage is the stage's *parent*
(a child is made when one of its jobs is done; `parent_key`/`parent_file` name it and the file
of its first field), every other named stage is that parent's stage or one of its ancestors.
Per field, for one parent job:

- naming the parent's stage: an axis over that job's files of the field's media kind (the
  children are the product of the axes; `first: true` pins the field to the first file);
- naming an ancestor stage: the ancestor job's file the chain passes through ("along" the
  chain), or, when the field's kind is not the kind the chain took from the ancestor, an axis
  over that job's files of the field's kind.

The plan's JSON (manifest/stages.py StagePlan.to_json, kept in the state) holds the first
field as `field`/`kind`/`many`/`first` and the others in `also`; run/child_files.py makes the
products, and `files_bound` is the one rule for "up to" (validate and run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batch_runner.catalog import max_outputs, media_fields

# what a `{from:}` (or `{run:}`) field holds while its template is expanded and validated (a
# public https URL, so the media checks take it as they would the parent's real output URL)
STAND_IN = "https://stage-output.invalid/{stage}"


@dataclass(frozen=True)
class Source:
    """One `{from:}` field of a stage as written."""

    field: str
    stage: str
    first: bool
    line: int | None


def deepest(sources: Mapping[str, Source], order: list[str]) -> Source | None:
    """The field whose stage comes last (the parent): the first such field as written."""
    if not sources:
        return None
    last = max(order.index(s.stage) for s in sources.values())
    return next(s for s in sources.values() if order.index(s.stage) == last)


def chain_of(stage: str, parent_of: Mapping[str, str | None]) -> list[str]:
    """`stage` and its ancestors, nearest first."""
    chain = [stage]
    while (up := parent_of.get(chain[-1])) is not None and up not in chain:
        chain.append(up)
    return chain


def off_chain(source: Source, parent: str, parent_of: Mapping[str, str | None]) -> str | None:
    """Why a field's stage is not on the parent's chain (None when it is)."""
    chain = chain_of(parent, parent_of)
    if source.stage in chain:
        return None
    came = (
        f"{parent} comes from {' <- '.join(chain[1:])}"
        if chain[1:]
        else f"{parent} is a first stage"
    )
    return (
        f"{{from: {source.stage}}} and {{from: {parent}}} are not on one chain ({came}): "
        "several {from:} fields must name one stage and its ancestors, so that each child has "
        "one parent job (the jobs of two unrelated stages cannot be paired)"
    )


def also_entry(
    source: Source,
    kind: str | None,
    many: bool,
    parent: str,
    plans: Mapping[str, Any],
    schema_of: Callable[[str], dict[str, Any] | None],
) -> dict[str, Any]:
    """A field other than the first, as the plan's JSON keeps it: with `along` (an ancestor's
    file taken where the chain passed) and `most` (the most files it can take per child set:
    1 along the chain or with first: true, else the most outputs of the ancestor's jobs)."""
    entry: dict[str, Any] = {
        "field": source.field,
        "stage": source.stage,
        "kind": kind,
        "many": many,
        "first": source.first,
    }
    if source.stage == parent:
        return entry
    below = parent  # the chain's stage whose parent is the named ancestor
    while plans[below].parent != source.stage:
        below = plans[below].parent
    link = plans[below].kind
    entry["along"] = link is None or kind is None or link == kind
    if entry["along"] or source.first:
        entry["most"] = 1
    else:
        specs = plans[source.stage].specs
        entry["most"] = max((max_outputs(schema_of(s.model), s.inputs) for s in specs), default=1)
    return entry


def files_bound(plan: Mapping[str, Any], outputs: int) -> int:
    """The most children one parent job makes per template: its files of the first field
    (`outputs`: the most its model returns; 1 with first: true) times each other field's."""
    n = 1 if plan.get("first") else outputs
    for extra in plan.get("also") or ():
        if extra["stage"] == plan.get("parent"):
            n *= 1 if extra.get("first") else outputs
        else:
            n *= int(extra.get("most", 1))
    return n


def stand_in(
    label: str,
    field: str,
    model: Any,
    job_model: str,
    schema_of: Callable[[str], Mapping[str, Any] | None],
) -> str | list[str]:
    """The stand-in URL for `field` of a job of `model` (the entry's own `model:`, one or a
    list, else the stage's `job_model`): a one-item list where every such model takes a list
    there (e.g. `image_urls`), as the child is then sent, else the URL."""
    url = STAND_IN.format(stage=label)
    models = model if isinstance(model, list) else [model or job_model]
    lists = [
        media_fields(schema_of(m)).get(field, (None, False))[1]
        for m in models
        if isinstance(m, str)
    ]
    return [url] if lists and all(lists) else url
