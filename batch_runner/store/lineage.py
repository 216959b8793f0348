"""Pipelines in the state file (CONTRACT §3, §4): which stage each job belongs to and, for a
later stage's job, the parent job and file it was made from.

A child job is written by `add_child` as journaled events (its `jobs` row, then its lineage
row): the caller writes them right after marking the parent done, so the parent's `done` and
its children are in the same commit. `INSERT OR IGNORE` on the unique key makes a second
attempt (a resume, a re-download) a no-op: children are created exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from batch_runner import jsonenc
from batch_runner.jobs import JobRecord, JobState
from batch_runner.store.journal import Journal

LINEAGE_VERSION = 5  # the schema version that added the lineage table
STAGES_META = "stages"  # the meta entry holding the stage plans (manifest/stages.py to_json)
S = JobState


@dataclass(frozen=True)
class ChildRow:
    """A child job to create: what the `jobs` and `lineage` rows hold."""

    key: str
    model: str
    inputs: dict[str, Any]
    meta: dict[str, Any]
    vars: dict[str, Any]
    source: str | None
    sweep: int | None
    stage: str
    parent_key: str
    parent_file: str
    estimate_usd: float | None


class Lineage(Journal):
    """The reads and events of stages; StateStore extends it."""

    version: int

    def _has_lineage(self) -> bool:
        return self.version >= LINEAGE_VERSION

    def stage_plans(self) -> list[dict[str, Any]]:
        """The stage plans this run directory was last run with ([] outside pipelines)."""
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (STAGES_META,))
        found = row.fetchone()
        return json.loads(found[0]) if found else []

    def record_roots(self, stage_of: dict[str, str]) -> None:
        """The stage of each first-stage job (by key), once."""
        with self._tx():
            self._conn.executemany(
                "INSERT OR IGNORE INTO lineage(job_idx, stage) SELECT idx, ? FROM jobs "
                "WHERE key = ?",
                [(stage, key) for key, stage in stage_of.items()],
            )

    def children_in_manifest(self, stages: list[str]) -> int:
        """Children of the manifest's later stages count as in it (they derive from it);
        returns how many were marked."""
        if not stages:
            return 0
        marks = ",".join("?" * len(stages))
        with self._tx():
            cur = self._conn.execute(
                "UPDATE jobs SET in_manifest = 1 WHERE in_manifest = 0 AND idx IN (SELECT job_idx "
                f"FROM lineage WHERE parent_key IS NOT NULL AND stage IN ({marks}))",
                stages,
            )
        return cur.rowcount

    def add_child(self, row: ChildRow) -> None:
        """Journal one child job (pending) and its lineage; nothing when its key exists."""
        self._write(
            "INSERT OR IGNORE INTO jobs(key, model, inputs, copy, meta, vars, sweep, source, "
            "state, estimate_usd, updated_at) VALUES (?,?,?,0,?,?,?,?,?,?,?)",
            (
                row.key,
                row.model,
                jsonenc.text(row.inputs),
                _dump(row.meta),
                _dump(row.vars),
                row.sweep,
                row.source,
                S.PENDING.value,
                row.estimate_usd,
                time.time(),
            ),
        )
        self._write(
            "INSERT OR IGNORE INTO lineage(job_idx, stage, parent_key, parent_file) "
            "SELECT idx, ?, ?, ? FROM jobs WHERE key = ?",
            (row.stage, row.parent_key, row.parent_file, row.key),
        )

    def pending_keys(self, keys: list[str]) -> list[tuple[int, str]]:
        """(idx, state) of those of `keys` that wait for a submit."""
        marks = ",".join("?" * len(keys))
        return self._conn.execute(
            f"SELECT idx, state FROM jobs WHERE key IN ({marks}) AND state = ? ORDER BY idx",
            (*keys, S.PENDING.value),
        ).fetchall()

    def done_of_stage(self, stage: str) -> Iterator[JobRecord]:
        """The done jobs of a stage, with their files (children are made of these)."""
        rows = self._conn.execute(
            "SELECT j.idx FROM jobs j JOIN lineage l ON l.job_idx = j.idx "
            "WHERE l.stage = ? AND j.state = ? ORDER BY j.idx",
            (stage, S.DONE.value),
        ).fetchall()
        indexes = [idx for (idx,) in rows]
        for i in range(0, len(indexes), 500):
            yield from self.jobs_at(indexes[i : i + 500])  # type: ignore[attr-defined]

    def job_by_key(self, key: str, *, with_files: bool = False) -> JobRecord | None:
        found = self._load("key = ?", (key,), with_files)  # type: ignore[attr-defined]
        return found[0] if found else None

    def set_inputs(self, idx: int, inputs: dict[str, Any]) -> None:
        """A child's inputs after its parent's URL was replaced (run/parent_urls.py): what it
        is sent from now on, and what its metadata records."""
        self._write("UPDATE jobs SET inputs = ? WHERE idx = ?", (jsonenc.text(inputs), idx))

    def set_file_url(self, idx: int, k: int, url: str) -> None:
        """A parent file's fresh URL, so children made later start with it."""
        self._write("UPDATE files SET url = ? WHERE job_idx = ? AND k = ?", (url, idx, k))

    def attach_lineage(self, records: list[JobRecord], conn: Any) -> None:
        """Each record's stage, parent key and parent file (none outside pipelines)."""
        if not records or not self._has_lineage():
            return
        by_idx = {r.index: r for r in records}
        for idx, stage, parent_key, parent_file in conn.execute(
            "SELECT job_idx, stage, parent_key, parent_file FROM lineage "
            "WHERE job_idx BETWEEN ? AND ?",
            (records[0].index, records[-1].index),
        ):
            rec = by_idx.get(idx)
            if rec is not None:
                rec.stage, rec.parent_key, rec.parent_file = stage, parent_key, parent_file

    # ---- reads for report.html's chains and per-stage grids (report/chains.py) -----------

    def stage_sections(self) -> dict[tuple[str | None, int | None], int]:
        """Jobs per (stage, sweep entry); stage None for jobs outside the pipeline."""
        join = "LEFT JOIN lineage l ON l.job_idx = j.idx" if self._has_lineage() else ""
        stage = "l.stage" if join else "NULL"
        rows = self._conn.execute(
            f"SELECT {stage}, j.sweep, count(*) FROM jobs j {join} GROUP BY 1, 2"
        )
        return {(s, sweep): n for s, sweep, n in rows}

    def iter_stage_section(self, stage: str | None, sweep: int | None) -> Iterator[JobRecord]:
        """The jobs of one stage's sweep entry (sweep None: its `jobs:`), in index order."""
        if stage is None:
            where = "NOT EXISTS (SELECT 1 FROM lineage l WHERE l.job_idx = j.idx)"
            return self._jobs_where(f"{where} AND j.sweep IS ?", (sweep,))
        where = "EXISTS (SELECT 1 FROM lineage l WHERE l.job_idx = j.idx AND l.stage = ?)"
        return self._jobs_where(f"{where} AND j.sweep IS ?", (stage, sweep))

    def chain_roots(self) -> Iterator[JobRecord]:
        """Jobs that start a chain: a first stage's, or a child whose parent is not in this
        run (made from another run directory's outputs)."""
        where = (
            "EXISTS (SELECT 1 FROM lineage l WHERE l.job_idx = j.idx AND (l.parent_key IS NULL "
            "OR NOT EXISTS (SELECT 1 FROM jobs p WHERE p.key = l.parent_key)))"
        )
        return self._jobs_where(where, ())

    def children_of(self, keys: list[str]) -> list[JobRecord]:
        """The jobs made from any of these parent keys, in index order."""
        out: list[JobRecord] = []
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            where = f"idx IN (SELECT job_idx FROM lineage WHERE parent_key IN ({marks}))"
            out += self._load(f"{where} ORDER BY idx", tuple(part), True)  # type: ignore[attr-defined]
        return sorted(out, key=lambda r: r.index)

    def _jobs_where(self, where: str, params: tuple[Any, ...]) -> Iterator[JobRecord]:
        indexes = [
            i
            for (i,) in self._conn.execute(
                f"SELECT j.idx FROM jobs j WHERE {where} ORDER BY j.idx", params
            )
        ]
        for i in range(0, len(indexes), 500):
            part = indexes[i : i + 500]
            marks = ",".join("?" * len(part))
            yield from self._load(f"idx IN ({marks}) ORDER BY idx", tuple(part), True)  # type: ignore[attr-defined]

    def stage_summary(self) -> dict[str, dict[str, Any]] | None:
        """`status --json`'s `stages` (CONTRACT §2): jobs, counts and done per stage, and how
        many children a failed parent did not create (in parent jobs); None outside pipelines."""
        if not self._has_lineage():
            return None
        plans = self.stage_plans()
        if not plans:
            return None
        out: dict[str, dict[str, Any]] = {
            p["name"]: {"jobs": 0, "counts": {}, "done": 0} for p in plans
        }
        for stage, state, n in self._conn.execute(
            "SELECT l.stage, j.state, count(*) FROM jobs j JOIN lineage l ON l.job_idx = j.idx "
            "GROUP BY l.stage, j.state"
        ):
            row = out.setdefault(stage, {"jobs": 0, "counts": {}, "done": 0})
            row["jobs"] += n
            row["counts"][state] = n
            if state == S.DONE.value:
                row["done"] = n
        for plan in plans:
            if plan.get("parent"):
                failed = out.get(plan["parent"], {}).get("counts", {})
                lost = failed.get(S.FAILED.value, 0) + failed.get(S.CANCELLED.value, 0)
                if lost:
                    out[plan["name"]]["not_created"] = {"parent_failed": lost}
        return out


def _dump(value: Any) -> str:
    return "{}" if value == {} else jsonenc.text(value)


def stage_of_roots(plans: Iterable[Any]) -> dict[str, str]:
    """key -> stage of every first-stage job of these plans (manifest/stages.py StagePlan)."""
    return {spec.key: plan.name for plan in plans if not plan.later for spec in plan.specs}
