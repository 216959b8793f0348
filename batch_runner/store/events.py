"""The events a run writes to its state file, journaled and committed per tick (store/journal.py).

Each records the state it is given: which move a job makes is decided (and checked against
jobs.TRANSITIONS) by the caller, never here. Lazy ones record what the API said and would say
again to a resumed run: they wait for the next commit. StateStore extends it.
"""

from __future__ import annotations

import json
import time

from batch_runner.jobs import FileRecord, JobState
from batch_runner.store.journal import Journal


class Events(Journal):
    """The writes of a run, one method per event."""

    def set_state(
        self, idx: int, state: JobState, reason: str | None = None, *, lazy: bool = False
    ) -> None:
        """`lazy`: a state a poll saw (queued, running), not one this run decided."""
        self._write(
            "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE idx = ?",
            (state.value, reason, time.time(), idx),
            lazy=lazy,
        )

    def mark_submitting(self, idx: int, state: JobState, *, duplicate_risk: bool) -> None:
        """The intent to submit (`duplicate_risk`: an earlier submit's answer was lost)."""
        self._write(
            "UPDATE jobs SET state = ?, reason = NULL, "
            "possible_duplicates = possible_duplicates + ?, updated_at = ? WHERE idx = ?",
            (state.value, 1 if duplicate_risk else 0, time.time(), idx),
        )

    def record_request_id(
        self, idx: int, state: JobState, attempt: int, request_id: str, reason: str | None = None
    ) -> None:
        """Attempt number `attempt` was accepted as `request_id` (the one record of it)."""
        now = time.time()
        self._write(
            "UPDATE jobs SET state = ?, reason = ?, attempts = ?, outputs = NULL, "
            "updated_at = ? WHERE idx = ?",
            (state.value, reason, attempt, now, idx),
        )
        self._write(
            "INSERT OR REPLACE INTO attempts(job_idx, n, request_id, submitted_at) "
            "VALUES (?,?,?,?)",
            (idx, attempt, request_id, now),
        )

    def record_outputs(self, idx: int, state: JobState, urls: list[str]) -> None:
        """The file URLs of a completed job (lazy: a resumed run asks /result again)."""
        self._write(
            "UPDATE jobs SET state = ?, reason = NULL, outputs = ?, updated_at = ? WHERE idx = ?",
            (state.value, json.dumps(urls), time.time(), idx),
            lazy=True,
        )

    def record_model_id(self, idx: int, attempt: int, model_id: str) -> None:
        """The model /result says ran attempt number `attempt` (lazy, like the outputs)."""
        self._write(
            "UPDATE attempts SET model_id = ? WHERE job_idx = ? AND n = ?",
            (model_id, idx, attempt),
            lazy=True,
        )

    def record_file(self, idx: int, f: FileRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO files(job_idx, k, file_name, sha256, bytes, url) "
            "VALUES (?,?,?,?,?,?)",
            (idx, f.k, f.file_name, f.sha256, f.bytes, f.url),  # a child is sent the url
        )

    def count_retry(self, cause: str) -> None:
        self._write(
            "INSERT INTO retries(cause, n) VALUES (?, 1) "
            "ON CONFLICT(cause) DO UPDATE SET n = n + 1",
            (cause,),
        )
