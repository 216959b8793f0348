"""The manifest's jobs brought into the state file, in one pass over them and in batches: a
run of a million jobs never holds them, their rows or their keys as strings at once (known
and present keys are 64-bit digests, digests.py). StateStore extends it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from batch_runner import jsonenc
from batch_runner.digests import DigestMap, key_digest
from batch_runner.jobs import JobSpec, JobState, input_files
from batch_runner.store.journal import Journal

BATCH = 5000  # rows per INSERT batch and keys per meta lookup
_INSERT = (
    "INSERT INTO jobs(idx, key, model, inputs, copy, meta, vars, sweep, source, state, "
    "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


class JobSync(Journal):
    def sync_jobs(self, specs: Iterable[JobSpec]) -> tuple[int, int]:
        """Add jobs whose key is new and mark which known jobs are in the manifest.

        Returns (added, not_in_manifest). Existing jobs are never removed, nor changed except
        one way: a job not sent yet takes the manifest's current paths of its input files
        (same contents, same key: the folder was moved).
        """
        added, missing, _ = self.sync(specs, meta=False)
        return added, missing

    def sync(self, specs: Iterable[JobSpec], *, meta: bool = True) -> tuple[int, int, int]:
        """sync_jobs, and (`meta`) the manifest's `meta` of known jobs stored where it changed
        (meta is never sent, so an edit costs nothing): (added, not in manifest, meta
        changed), in one pass over `specs` and one transaction."""
        known = DigestMap()
        for (key,) in self._conn.execute("SELECT key FROM jobs"):
            known.add(key_digest(key), 1)
        next_idx = (self._conn.execute("SELECT max(idx) FROM jobs").fetchone()[0] or 0) + 1
        present = DigestMap(capacity=len(known) or 1024)
        rows: list[tuple] = []
        moved, metas = [], []  # known jobs: new input paths; (key, meta) to compare
        added = edited = 0
        now = time.time()
        with self._tx():
            for spec in specs:
                key = spec.key
                d = key_digest(key)
                if present.add(d, 1):
                    continue  # the same key again: the first one counts
                if known.get(d) is not None:
                    if input_files(spec.inputs):
                        moved.append((_dump(spec.inputs), key, JobState.PENDING.value))
                    if meta:
                        metas.append((key, _dump(spec.meta)))
                        if len(metas) >= BATCH:
                            edited += self._update_meta(metas)
                    continue
                rows.append(_row(next_idx, spec, now))
                next_idx += 1
                if len(rows) >= BATCH:
                    added += self._insert(rows)
            added += self._insert(rows)
            edited += self._update_meta(metas)
            # only the rows that change: rewriting every row moves its entry in jobs_totals
            self._conn.execute("UPDATE jobs SET in_manifest = 1 WHERE in_manifest = 0")
            self._conn.executemany("UPDATE jobs SET inputs = ? WHERE key = ? AND state = ?", moved)
            gone = [
                (key,)
                for (key,) in self._conn.execute("SELECT key FROM jobs")
                if present.get(key_digest(key)) is None
            ]
            self._conn.executemany("UPDATE jobs SET in_manifest = 0 WHERE key = ?", gone)
        return added, len(gone), edited

    def _insert(self, rows: list[tuple]) -> int:
        """Insert the rows and empty the list; returns how many."""
        self._conn.executemany(_INSERT, rows)
        n = len(rows)
        rows.clear()
        return n

    def _update_meta(self, metas: list[tuple[str, str]]) -> int:
        """Store each (key, meta) that differs from the stored one (unknown keys: none); the
        list is emptied. Returns how many changed."""
        if not metas:
            return 0
        wanted = dict(metas)
        metas.clear()
        marks = ",".join("?" * len(wanted))
        changed = [
            (wanted[key], key)
            for key, stored in self._conn.execute(
                f"SELECT key, meta FROM jobs WHERE key IN ({marks})", list(wanted)
            )
            if stored != wanted[key]
        ]
        self._conn.executemany("UPDATE jobs SET meta = ? WHERE key = ?", changed)
        return len(changed)


def _row(idx: int, spec: JobSpec, now: float) -> tuple:
    source = str(spec.source) if spec.source else None
    return (
        idx,
        spec.key,
        spec.model,
        _dump(spec.inputs),
        spec.copy,
        _dump(spec.meta),
        _dump(spec.vars),
        spec.sweep,
        source,
        JobState.PENDING.value,
        now,
    )


def _dump(value: Any) -> str:
    # the manifest's field order is kept (the report's sweep axes follow it); keys are
    # computed from sorted JSON elsewhere (jobs.job_key)
    return "{}" if value == {} else jsonenc.text(value)
