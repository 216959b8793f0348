"""`{STAGE.NAME}` in a later stage's strings (CONTRACT §3 Pipelines): a parent's (or an earlier
ancestor's) inputs, vars and meta, read when the child is made (run/children.py fills them).
Here: the pattern, and the check made up front that each names an ancestor stage and one of
its jobs' inputs, vars or meta."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from batch_runner.jobs import JobSpec

# {STAGE.NAME}: a dot inside braces, which no other placeholder has
PARENT_REF = re.compile(r"\{([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)\}")


def ref_problems(
    parent: str | None, plans: Mapping[str, Any], specs: list[JobSpec]
) -> Iterable[tuple[int | None, str, str]]:
    """(line, field, message) of each `{STAGE.NAME}` that names no ancestor stage of `parent`
    (itself included), or a name its jobs do not have; `plans` are the earlier StagePlans."""
    ancestors: dict[str, set[str]] = {}
    while parent is not None and parent in plans:
        ancestors[parent] = set().union(
            *({*s.inputs, *s.vars, *s.meta} for s in plans[parent].specs)
        )
        parent = plans[parent].parent
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        for field, text in _strings(spec):
            for stage, name in PARENT_REF.findall(text):
                if (stage, name) in seen:
                    continue
                seen.add((stage, name))
                line = spec.source.line if spec.source else None
                ref = f"{{{stage}.{name}}}"
                if stage not in ancestors:
                    known = ", ".join(ancestors) or "none: no {from:} field"
                    yield line, field, f"{ref}: {stage} is not a parent stage ({known})"
                elif name not in ancestors[stage]:
                    has = f"stage {stage}'s jobs have no input, var or meta {name!r}"
                    yield line, field, f"{ref}: {has}"


def _strings(spec: JobSpec) -> Iterable[tuple[str, str]]:
    for field, value in spec.inputs.items():
        if isinstance(value, str) and "{" in value:
            yield field, value
    for field, value in spec.meta.items():
        if isinstance(value, str) and "{" in value:
            yield f"meta.{field}", value
