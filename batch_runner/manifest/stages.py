"""Pipelines (CONTRACT §3): a YAML manifest's `stages:`, read, linked and validated up front.

A stage is a manifest of its own (model, defaults, model_defaults, repeat, jobs, sweep). In a
later stage, a media field may be `{from: STAGE}` (optionally `first: true`): its jobs are
*templates*, made into real jobs at run time, one per matching output file of each done job of
STAGE (run/children.py); several such fields name stages on one chain (stage_sources.py).
A stage's one `{run: DIR}` field is the same axis over another run directory's finished
outputs (run_axis.py): such a stage starts a chain, so it has no `{from:}` field.
Here each template is expanded and validated like any job, with a stand-in URL in each
`{from:}` field, and each field's media kind is checked against what its stage's models make.
`{STAGE.NAME}` in a string reads a parent's (or an earlier ancestor's) inputs, vars and meta
when the child is made.

Stages run in the order written: `{from:}` may only name an earlier stage, so there are no
cycles. Problems name the stage: `FILE:LINE: stage S: model M: field: ...`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batch_runner.catalog import media_fields
from batch_runner.errors import ManifestError, Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.expand import Expansion
from batch_runner.manifest.rows import Entry, Manifest
from batch_runner.manifest.run_axis import is_run, mixed, run_source
from batch_runner.manifest.stage_refs import ref_problems
from batch_runner.manifest.stage_sources import Source, also_entry, deepest, off_chain, stand_in

STAGE_KEYS = ("model", "defaults", "model_defaults", "repeat", "jobs", "sweep")


@dataclass(frozen=True)
class Stage:
    """One entry of `stages:` as read: its name, its own manifest and where it was written."""

    name: str
    manifest: Manifest
    line: int | None


@dataclass(frozen=True)
class StagePlan:
    """A validated stage: a first stage's jobs, or a later stage's templates and its link."""

    name: str
    specs: list[JobSpec]
    parent: str | None = None  # the stage named by `{from:}`
    field: str | None = None  # the media field that takes the parent's files
    kind: str | None = None  # that field's media kind (image, video, audio)
    many: bool = False  # the field takes a list (the file is sent as a one-item list)
    first: bool = False  # only each parent job's first file
    also: tuple[dict[str, Any], ...] = ()  # the other {from:} fields (stage_sources.py)
    run: str | None = None  # `{run: DIR}` (manifest/run_axis.py): the other run directory
    flat: bool = False  # a plain manifest's `{run:}` stage: its files stay in RUN_DIR itself
    shard: tuple[int, int] | None = None  # (K, N): it makes the children of its parents only
    files: tuple[str, ...] = ()  # the other run's files taken (relative to it)
    where: tuple[str, int | None] = ("", None)  # the `{run:}` field's file and line

    @property
    def later(self) -> bool:
        """Its jobs are templates, made into children of another stage's or run's files."""
        return self.parent is not None or self.run is not None

    def to_json(self) -> dict[str, Any]:
        """What the state file keeps, so `resume` makes children without the manifest."""
        return {
            "name": self.name,
            "parent": self.parent,
            "field": self.field,
            "kind": self.kind,
            "many": self.many,
            "first": self.first,
            "also": list(self.also),
            "run": self.run,
            "flat": self.flat,
            "shard": self.shard,
            "templates": [
                {
                    "key": s.key,
                    "model": s.model,
                    "inputs": s.inputs,
                    "meta": s.meta,
                    "vars": s.vars,
                    "source": str(s.source) if s.source else None,
                    "sweep": s.sweep,
                }
                for s in (self.specs if self.later else [])
            ],
        }


# ---- reading (called by read_yaml.py) -------------------------------------------------------


def read_stages(
    node: Any, name: str, parse: Callable[[Any], Manifest], problems: list[Problem]
) -> tuple[Stage, ...]:
    """`stages:` as a mapping node of NAME: mapping; `parse` reads one stage's mapping like a
    manifest's top level."""
    import yaml

    if not isinstance(node, yaml.MappingNode) or not node.value:
        problems.append(Problem(name, node.start_mark.line + 1, "stages", _STAGES_SHAPE))
        return ()
    stages = []
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        stage = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(stage, str) or not re.fullmatch(r"[A-Za-z_][\w-]*", stage):
            msg = f"stage names are words (letters, digits, _ or -), not {stage!r}"
            problems.append(Problem(name, line, "stages", msg))
            continue
        if not isinstance(value_node, yaml.MappingNode):
            problems.append(Problem(name, line, f"stages.{stage}", _STAGES_SHAPE))
            continue
        own: list[Problem] = []
        sub = parse(value_node)
        for key in sub.lines:
            if key not in STAGE_KEYS:
                allowed = ", ".join(STAGE_KEYS)
                msg = f"{key!r} is not a stage key (a stage has {allowed})"
                own.append(Problem(name, sub.lines[key], None, msg))
        problems += [dataclasses.replace(p, stage=stage) for p in own]
        stages.append(Stage(stage, sub, line))
    return tuple(stages)


_STAGES_SHAPE = "must be a mapping of stage name to {model, defaults, jobs, sweep, ...}"


# ---- linking and validating (called by load.py) ---------------------------------------------


# load_jobs on one stage's manifest; True for a later stage (its jobs are templates: their
# file names depend on the parents, so the name template is not checked on them)
LoadOne = Callable[[Manifest, bool], Expansion]


def load_stages(
    manifest: Manifest,
    load_one: LoadOne,
    schema_of: Callable[[str], dict[str, Any] | None],
    kind_of: Callable[[str], str | None],
) -> Expansion:
    """Every stage loaded and checked; the Expansion's jobs are the first stages' jobs, its
    `stages` the plans of all. ManifestError with every problem of every stage."""
    problems: list[Problem] = []
    if manifest.entries:
        line = manifest.lines.get("jobs") or manifest.lines.get("sweep")
        msg = "with stages:, jobs and sweeps go inside a stage"
        problems.append(Problem(manifest.source.file, line, None, msg))
    plans: dict[str, StagePlan] = {}
    warnings: list[str] = []
    sweeps: list[tuple[Location, int]] = []
    order = [s.name for s in manifest.stages]
    for stage in manifest.stages:
        own: list[Problem] = []
        sub = _inherit(manifest, stage.manifest)
        link = _Link(stage, sub, order, own, schema_of)
        expansion = None
        if not own:
            try:
                expansion = load_one(link.manifest, link.field is not None)
            except ManifestError as exc:
                own += exc.problems
        if expansion is not None:
            plan = link.plan(expansion.jobs, plans, schema_of, kind_of)
            if plan is not None:
                plans[stage.name] = plan
            warnings += [f"stage {stage.name}: {w}" for w in expansion.warnings]
            sweeps += expansion.sweep_counts
        problems += [p if p.stage else dataclasses.replace(p, stage=stage.name) for p in own]
    if problems:
        raise ManifestError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    roots = [spec for plan in plans.values() if not plan.later for spec in plan.specs]
    return Expansion(
        manifest.job_model,
        manifest.options,
        roots,
        sweeps,
        warnings,
        stages=list(plans.values()),
    )


def _inherit(top: Manifest, own: Manifest) -> Manifest:
    """A stage takes the top level's model, defaults and model_defaults where it sets none."""
    has_model = "model" in own.lines or own.default_model is not None
    model_defaults = {
        m: {**top.model_defaults.get(m, {}), **own.model_defaults.get(m, {})}
        for m in {**top.model_defaults, **own.model_defaults}
    }
    return dataclasses.replace(
        own,
        model=own.model if has_model else top.model,
        default_model=own.default_model if has_model else top.default_model,
        defaults={**top.defaults, **own.defaults},
        model_defaults=model_defaults,
        options=top.options,
    )


class _Link:
    """One stage's `{from:}` fields (or its `{run:}` field) found, checked and replaced by the
    stand-in URL."""

    def __init__(
        self,
        stage: Stage,
        sub: Manifest,
        order: list[str],
        problems: list[Problem],
        schema_of: Callable[[str], dict[str, Any] | None],
    ):
        self.stage, self.sub, self.schema_of = stage, sub, schema_of
        self.problems = problems
        self.sources: dict[str, Source] = {}  # every {from:} field, as first written
        self.run: Source | None = None  # its {run: DIR} field (`stage`: the directory)
        earlier = order[: order.index(stage.name)]
        entries = [self._entry(e, earlier, order) for e in sub.entries]
        self.manifest = dataclasses.replace(sub, entries=entries)
        main = deepest(self.sources, order)  # the parent: the deepest stage named
        self.parent = main.stage if main else None
        if self.run is not None:  # another run's files start the chain: no parent stage
            for source in self.sources.values():
                self._problem(source.line, source.field, mixed(source, self.run))
            main, self.parent = self.run, None
        self.field = main.field if main else None
        self.first = main.first if main else False
        self.line = main.line if main else None

    def _problem(self, line: int | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(str(self.stage.manifest.path), line, field, message))

    def _entry(self, entry: Entry, earlier: list[str], order: list[str]) -> Entry:
        if not isinstance(entry.data, dict):
            return entry
        data = dict(entry.data)
        for field, value in entry.data.items():
            line = entry.field_lines.get(field, entry.source.line)
            if is_run(value):  # {run: DIR}: another run directory's outputs (run_axis.py)
                data[field] = self._run(value, line, field, entry)
                continue
            if not (isinstance(value, dict) and "from" in value):
                continue
            parent = self._from(value, line, field, earlier, order)
            if parent is None:
                continue
            source = Source(field, parent, bool(value.get("first", False)), line)
            seen = self.sources.setdefault(field, source)
            if (seen.stage, seen.first) != (source.stage, source.first):
                was = f"{{from: {seen.stage}{', first: true' if seen.first else ''}}}"
                msg = f"a stage's jobs take the same {{from:}} fields (line {seen.line}: {was})"
                self._problem(line, field, msg)
                continue
            data[field] = self._stand_in(parent, field, entry)
        return dataclasses.replace(entry, data=data)

    def _stand_in(self, label: str, field: str, entry: Entry) -> str | list[str]:
        model = entry.data.get("model")
        return stand_in(label, field, model, self.sub.job_model, self.schema_of)

    def _run(self, value: dict, line: int | None, field: str, entry: Entry) -> Any:
        found = run_source(value, line, field, self.stage.manifest.path, self.run)
        if isinstance(found, str):
            self._problem(line, field, found)
            return value
        self.run = found
        return self._stand_in("run", field, entry)

    def _from(
        self, value: dict, line: int | None, field: str, earlier: list[str], order: list[str]
    ) -> str | None:
        parent = value.get("from")
        extra = set(value) - {"from", "first"}
        if extra:
            self._problem(line, field, f"{{from:}} takes from and first, not {sorted(extra)}")
            return None
        if not isinstance(value.get("first", False), bool):
            self._problem(line, field, f"first: must be true or false, not {value['first']!r}")
            return None
        if parent in earlier:
            return parent
        if parent == self.stage.name:
            self._problem(line, field, "a stage cannot take its own outputs")
        elif parent in order:
            self._problem(
                line, field, f"stage {parent} comes later (stages run in the order written)"
            )
        else:
            known = ", ".join(earlier) or "none"
            self._problem(line, field, f"no stage {parent!r} (earlier stages: {known})")
        return None

    def plan(
        self,
        specs: list[JobSpec],
        plans: Mapping[str, StagePlan],
        schema_of: Callable[[str], dict[str, Any] | None],
        kind_of: Callable[[str], str | None],
    ) -> StagePlan | None:
        name = self.stage.name
        for line, field, msg in ref_problems(self.parent, plans, specs):
            self._problem(line, field, msg)
        if self.run is not None:  # its files' kinds are read from the other run later
            kind, many = self._kind(self.run, specs, {None}, schema_of)
            if self.problems:
                return None
            where = (str(self.stage.manifest.path), self.line)
            run = self.run.stage
            return StagePlan(
                name, specs, None, self.field, kind, many, self.first, run=run, where=where
            )
        if self.parent is None:
            return StagePlan(name, specs)
        if any(plans.get(s.stage) is None for s in self.sources.values()):
            return None  # a named stage had problems of its own
        parent_of = {n: p.parent for n, p in plans.items()}

        def made(stage: str) -> set[str | None]:
            return {kind_of(m) for m in {s.model for s in plans[stage].specs}}

        for source in self.sources.values():
            why = off_chain(source, self.parent, parent_of)
            if why is not None:
                self._problem(source.line, source.field, why)
        kinds = {
            s.field: self._kind(s, specs, made(s.stage), schema_of) for s in self.sources.values()
        }
        if self.problems:
            return None
        kind, many = kinds[self.field]
        also = tuple(
            also_entry(s, *kinds[s.field], self.parent, plans, schema_of)
            for s in self.sources.values()
            if s.field != self.field
        )
        return StagePlan(name, specs, self.parent, self.field, kind, many, self.first, also)

    def _kind(
        self,
        source: Source,
        specs: list[JobSpec],
        made: set[str | None],
        schema_of: Callable[[str], dict[str, Any] | None],
    ) -> tuple[str | None, bool]:
        """The field's media kind and list-ness, checked against what its stage makes (`made`;
        None in it: not known)."""
        kind, many = None, False
        for model in dict.fromkeys(s.model for s in specs):
            schema = schema_of(model)
            fields = media_fields(schema)
            if schema is not None and source.field not in fields:
                axis = "{run:}" if source is self.run else "{from:}"
                msg = f"{axis} needs a media input (an image, video or audio URL field)"
                self.problems.append(self._at(model, msg, source))
                continue
            kind, many = fields.get(source.field, (None, False))
            if kind is not None and None not in made and kind not in made:
                makes = " or ".join(sorted(k for k in made if k))
                msg = f"takes {kind} files, but stage {source.stage} makes {makes} files"
                self.problems.append(self._at(model, msg, source))
        return kind, many

    def _at(self, model: str, message: str, source: Source) -> Problem:
        file = str(self.stage.manifest.path)
        return Problem(file, source.line, source.field, message, model, self.stage.name)
