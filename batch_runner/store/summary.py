"""The reads `status`, `serve` and the end of a run summarise a run directory with: counts per
state, files and bytes, duplicates, failures, retries, the ETA and marks (`status --json`,
CONTRACT §2). StateStore extends it."""

from __future__ import annotations

from typing import Any

from batch_runner.jobs import NOT_POLLED, FileRecord, JobState, current_request_id
from batch_runner.store.costs import cost_summary
from batch_runner.store.eta import eta_seconds
from batch_runner.store.journal import Journal
from batch_runner.store.marks import mark_counts, unwritten

S = JobState
_FAILURES = (S.FAILED.value, S.CANCELLED.value, S.UNCERTAIN.value)  # what the summary lists


class Summaries(Journal):
    """Counts and totals over the whole state file (one statement each: one snapshot, also
    while a run commits)."""

    version: int

    def counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"))

    def summary(self) -> dict[str, Any]:
        """The object `status --json` prints (CONTRACT §2)."""
        # the counts, the queued jobs not polled yet, duplicates, models and the money ahead
        # from one pass over an index (store/costs.py job_groups)
        groups = self.job_groups()
        counts: dict[str, int] = {}
        not_polled = dups = not_in = 0
        for g in groups:
            counts[g.state] = counts.get(g.state, 0) + g.jobs
            not_polled += g.jobs if g.state == S.QUEUED.value and g.reason == NOT_POLLED else 0
            dups += g.duplicates * g.jobs
            not_in += g.jobs if g.in_manifest == 0 else 0
        files, size = self.file_totals()
        failures = [
            {
                "index": idx,
                "key": key,
                "state": state,
                "reason": reason,
                "request_id": current_request_id(JobState(state), [rid] if rid else []),
            }
            for idx, key, state, reason, rid in self._conn.execute(
                "SELECT j.idx, j.key, j.state, j.reason, a.request_id FROM jobs j "
                "LEFT JOIN attempts a ON a.job_idx = j.idx AND a.n = j.attempts "
                "WHERE j.state IN (?, ?, ?) ORDER BY j.idx LIMIT 1000",
                _FAILURES,
            )
        ]
        out = {
            "jobs": sum(counts.values()),
            "counts": counts,
            "cost": cost_summary(self, groups),
            "models": self.model_counts(groups),
            "files": files,
            "bytes": size,
            "possible_duplicates": dups,
            **({"stages": stages} if (stages := self.stage_summary()) else {}),
            "not_in_manifest": not_in,
            "not_polled": not_polled,  # of the queued: submitted, not seen by a poll yet
            "retries": self.retry_counts(),
            "from_archive": self.archive_summary(),  # jobs whose files came from --archive
            "failures": failures,
            "eta_s": eta_seconds(self._conn),
        }
        marks = mark_counts(self._conn, self.version)
        if marks:  # CONTRACT §2: only when there are marks
            out["marks"] = marks
        return out

    def eta(self) -> float | None:
        """Seconds until every job now known is finished (`eta_s`, store/eta.py)."""
        return eta_seconds(self._conn)

    def unwritten_marks(self) -> float | None:
        """When marks last changed, if metadata.jsonl does not show that yet (store/marks.py)."""
        return unwritten(self._conn, self.version)

    def last_activity(self) -> float | None:
        """When a job last changed (epoch seconds; None without jobs)."""
        return self._conn.execute("SELECT max(updated_at) FROM jobs").fetchone()[0]

    def retry_counts(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT cause, n FROM retries ORDER BY n DESC"))

    def file_count(self) -> int:
        return self.file_totals()[0]

    def files_under(self, folder: str) -> int:
        """Files whose name starts with `folder` (e.g. "images/train/"; no LIKE: names may
        hold `%` and `_`)."""
        return self._conn.execute(
            "SELECT count(*) FROM files WHERE substr(file_name, 1, ?) = ?", (len(folder), folder)
        ).fetchone()[0]

    def files_from(self, min_bytes: int) -> list[FileRecord]:
        """Every file of at least `min_bytes` (the report's thumbnails), without its job."""
        rows = self._conn.execute(
            "SELECT file_name, k, sha256, bytes, url FROM files WHERE bytes >= ? "
            "ORDER BY job_idx, k",
            (min_bytes,),
        )
        return [FileRecord(*row) for row in rows]

    def file_totals(self) -> tuple[int, int]:
        """(files, bytes) over every job."""
        files, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM files"
        ).fetchone()
        return files, size
