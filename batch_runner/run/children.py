"""A pipeline's later stages at run time (CONTRACT §3): when a parent job is done, its child
jobs are made from the stage templates (manifest/stages.py) and run in the same pool.

Each child is one template × one of the parent's files (of the `{from:}` field's media kind;
only the first with `first: true`), times the files of the stage's other `{from:}` fields
(run/child_files.py). Its key derives from the parent's key, the template's key and the
files' positions, so however often a parent is seen done (resumes, re-downloads, a
stage added later) its children are the same rows, created once (`INSERT OR IGNORE`). The
child is sent the parent's output URL as the API returned it (no download and re-upload); a
parent file whose URL was not kept (taken from an archive written before URLs were, or
downloaded before they were) gives a null, filled before the child's first submit
(run/parent_urls.py `fill`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from batch_runner.catalog import CatalogEntry
from batch_runner.jobs import FileRecord, JobRecord
from batch_runner.manifest.stage_refs import PARENT_REF
from batch_runner.money import job_price
from batch_runner.run import run_axis
from batch_runner.run.child_files import Pick, child_key, picks
from batch_runner.run.parent_urls import ParentUrls
from batch_runner.run.run_axis import run_of
from batch_runner.settings import RunSettings
from batch_runner.store.lineage import ChildRow
from batch_runner.store.state import StateStore

Enqueue = Callable[[list[tuple[int, str]]], None]  # (idx, state) of new jobs for the pool


class Children:
    """The stage plans of a run directory, and the making of children from done parents."""

    def __init__(self, store: StateStore, plans: list[dict[str, Any]]):
        self.store = store
        self.plans = plans
        self.by_parent: dict[str, list[dict[str, Any]]] = {}
        for plan in plans:
            if plan.get("parent"):
                self.by_parent.setdefault(plan["parent"], []).append(plan)
        self.entries: Mapping[str, CatalogEntry | None] = {}
        self.enqueue: Enqueue | None = None  # set once the pool runs
        self.fields = {  # stage -> its {from:} fields (the parent's first) or its {run:} field
            p["name"]: [p["field"], *(a["field"] for a in p.get("also") or ())]
            for p in plans
            if p.get("parent") or p.get("run")
        }
        self.flat = {p["name"] for p in plans if p.get("flat")}  # a plain manifest's {run:}
        self.urls: ParentUrls | None = None  # dead parent URLs replaced (set once the pool runs)

    @classmethod
    def of(cls, store: StateStore) -> Children | None:
        plans = store.stage_plans() if store._has_lineage() else []
        return cls(store, plans) if any(p.get("parent") or p.get("run") for p in plans) else None

    def fields_of(self, job: JobRecord) -> list[str]:
        """The media fields a child was given its parent's (or ancestors') files in."""
        return self.fields.get(job.stage or "", []) if job.parent_key else []

    def source(self, job: JobRecord, field: str) -> tuple[JobRecord | None, FileRecord | None]:
        """The job and file a child's `field` was made from (run/parent_urls.py refreshes its
        URL from that job's /result): the parent's file, or another field's found again by
        making the child's picks once more and matching its key."""
        parent = self.store.job_by_key(job.parent_key or "", with_files=True)
        plan = next((p for p in self.plans if p.get("name") == job.stage), None)
        if parent is None or plan is None:
            return parent, None
        if field == plan["field"]:
            return parent, next((f for f in parent.files if f.file_name == job.parent_file), None)
        for first, more in picks(plan, parent, parent.files, self._with_files):
            for template in plan.get("templates", []):
                if child_key(parent.key, template["key"], first.file.k, more) == job.key:
                    pick = next(p for p in more if p.field == field)
                    return pick.job, pick.file
        return parent, None

    def folder(self, job: JobRecord) -> str | None:
        """The folder of RUN_DIR a job's files go in: its stage's (None: RUN_DIR itself)."""
        return None if job.stage in self.flat else job.stage

    def other_run(self, job: JobRecord) -> Path | None:
        """The run directory a `{run:}` child's parent is in (None: this one)."""
        return run_of(self.plans, job.stage) if job.parent_key else None

    def models(self) -> set[str]:
        return {t["model"] for plan in self.plans for t in plan.get("templates", [])}

    async def price(
        self,
        client: Any,
        base: str,
        settings: RunSettings,
        resolved: Mapping[str, CatalogEntry | None] | None,
    ) -> None:
        """The catalogue entries children are priced by (each child's estimate, which
        --max-cost reserves before its submit): those validation resolved, else asked now."""
        from batch_runner.api.catalog import prices_for

        wanted = self.models()
        entries = {m: e for m, e in (resolved or {}).items() if m in wanted}
        missing = wanted - entries.keys()
        if missing:
            live = None if settings.offline and not settings.simulate else client
            entries |= await prices_for(live, base, missing, cache=not settings.simulate)
        self.entries = entries

    # ---- making children -------------------------------------------------------------------

    def create(self, parent: JobRecord, files: Iterable[FileRecord]) -> list[str]:
        """Journal the children of a done parent (the caller commits them with its `done`);
        returns their keys."""
        keys: list[str] = []
        for plan in self.by_parent.get(parent.stage or "", []):
            for row in self._rows(plan, parent, list(files)):
                self.store.add_child(row)
                keys.append(row.key)
        return keys

    def queue(self, keys: list[str]) -> None:
        """Hand the pending ones of `keys` to the pool (after their commit)."""
        if keys and self.enqueue is not None:
            found: list[tuple[int, str]] = []
            for i in range(0, len(keys), 500):
                found += self.store.pending_keys(keys[i : i + 500])
            self.enqueue(found)

    def catch_up(self) -> int:
        """Children of parents already done (a stage added to the manifest, or parents done
        before a crash): created now, nothing sent for the parents. Returns how many keys."""
        made = 0
        for stage in self.by_parent:
            for parent in self.store.done_of_stage(stage):
                made += len(self.create(parent, parent.files))
        made += run_axis.catch_up(self)  # {run: DIR}: another run directory's done jobs
        self.store.flush()
        return made

    def _rows(
        self, plan: dict[str, Any], parent: JobRecord, files: list[FileRecord]
    ) -> Iterable[ChildRow]:
        many = {a["field"]: a.get("many") for a in plan.get("also") or ()}
        many[plan["field"]] = plan.get("many")
        for first, more in picks(plan, parent, files, self._with_files):
            f = first.file  # a file without its URL: null, asked for before the first submit
            for template in plan.get("templates", []):
                inputs = {k: self._fill(v, parent) for k, v in template["inputs"].items()}
                inputs |= {p.field: _value(p, many) for p in (first, *more)}
                meta = {k: self._fill(v, parent) for k, v in template["meta"].items()}
                variables = dict(template["vars"])
                if "input_stem" in variables:  # named for the parent's file, not the stand-in
                    variables["input_stem"] = f.file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                yield ChildRow(
                    key=child_key(parent.key, template["key"], f.k, more),
                    model=template["model"],
                    inputs=inputs,
                    meta=meta,
                    vars=variables,
                    source=template.get("source"),
                    sweep=template.get("sweep"),
                    stage=plan["name"],
                    parent_key=parent.key,
                    parent_file=f.file_name,
                    estimate_usd=job_price(self.entries.get(template["model"]), inputs),
                )

    rows = _rows  # run/run_axis.py makes a {run:} stage's children with it

    def _fill(self, value: Any, parent: JobRecord) -> Any:
        """`{STAGE.NAME}` from the parent (or an earlier ancestor): its vars, inputs, meta."""
        if not isinstance(value, str) or "{" not in value:
            return value

        def one(m: re.Match[str]) -> str:
            job = self._ancestor(parent, m.group(1))
            if job is None:
                return m.group(0)
            values = {**job.meta, **job.inputs, **job.vars}
            found = values.get(m.group(2))
            return m.group(0) if found is None else str(found)

        return PARENT_REF.sub(one, value)

    def _with_files(self, key: str) -> JobRecord | None:
        return self.store.job_by_key(key, with_files=True)

    def _ancestor(self, job: JobRecord | None, stage: str) -> JobRecord | None:
        while job is not None and job.stage != stage:
            job = self.store.job_by_key(job.parent_key) if job.parent_key else None
        return job


def _value(pick: Pick, many: Mapping[str, Any]) -> Any:
    """A file's URL as its field takes it (a one-item list for a list field)."""
    return [pick.file.url] if many.get(pick.field) else pick.file.url


def record_stages(store: StateStore, plans: list[Any]) -> int:
    """A pipeline's plans kept in the state (a resume makes children without the manifest),
    each first-stage job's stage recorded, and the children of parents already done made.
    Returns how many children made before are in the manifest (of one of its stages)."""
    from batch_runner.store.lineage import STAGES_META, stage_of_roots

    store.set_meta({STAGES_META: [plan.to_json() for plan in plans]})
    store.record_roots(stage_of_roots(plans))
    children = Children.of(store)
    if children is not None:
        children.catch_up()
    return store.children_in_manifest([p.name for p in plans if p.later])
