"""What `serve` shows of a run directory (or of a folder of shards), read from the state files
opened read-only, fresh for every request: a run writing beside it is never blocked (SQLite's
WAL lets a reader see the last commit while the writer goes on), and a state file that gained
a table since (marks) is read as it is now.

Every function here is blocking (SQLite, the file system): the server calls them on a worker
thread, so the event loop keeps answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batch_runner.errors import StateError
from batch_runner.jobs import FileRecord, JobRecord, shown_input
from batch_runner.outputs.metadata import OUTPUT_DIRS, media_type
from batch_runner.report.thumbs import THUMBS_DIR
from batch_runner.run.lock import RunLock
from batch_runner.shards import shard_dirs
from batch_runner.store.marks import set_mark
from batch_runner.store.state import STATE_FILE, StateStore

MAX_OUTPUTS = 5000  # the most jobs one /api/outputs answer lists


@dataclass(frozen=True)
class RunView:
    """A run directory, or a folder of `shard-K-of-N/` runs shown together."""

    root: Path

    @classmethod
    def of(cls, path: Path) -> RunView:
        view = cls(Path(path).resolve())
        if not view.parts():
            raise StateError(f"{path}: no state file here ({STATE_FILE} is missing)")
        return view

    @property
    def sharded(self) -> bool:
        return not (self.root / STATE_FILE).is_file() and bool(shard_dirs(self.root))

    def parts(self) -> list[tuple[str | None, Path]]:
        """(shard folder name or None, run directory) of each run shown, shards in order;
        shards not started yet (no state file) are left out."""
        if (self.root / STATE_FILE).is_file():
            return [(None, self.root)]
        return [(s.name, p) for s, p in shard_dirs(self.root) if (p / STATE_FILE).is_file()]

    def live(self) -> bool:
        """Whether a run holds one of the run directories now."""
        return any(RunLock(path).owner() is not None for _, path in self.parts())

    # ---- reads ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The `status --json` object (a folder of shards: them added up, as `status` does)."""
        if self.sharded:
            from batch_runner.report.shard_status import shards_summary

            return shards_summary(self.root)
        with StateStore.open(self.root, readonly=True) as store:
            return store.summary()

    def outputs(self, limit: int) -> dict[str, Any]:
        """The `limit` jobs done last, newest first, with their files' URLs on this server."""
        limit = max(1, min(limit, MAX_OUTPUTS))
        found: list[tuple[float, str | None, JobRecord]] = []
        for name, path in self.parts():
            with StateStore.open(path, readonly=True) as store:
                found += [(t, name, rec) for t, rec in store.recent_done(limit)]
        found.sort(key=lambda item: (item[0], item[2].index), reverse=True)
        return {"outputs": [_output(t, name, rec) for t, name, rec in found[:limit]]}

    # ---- the one write ---------------------------------------------------------------------

    def mark(self, key: str, mark: str | None) -> bool:
        """Store a job's mark in the state file that holds the job; False: no such job."""
        return any(set_mark(path / STATE_FILE, key, mark) for _, path in self.parts())

    # ---- files -----------------------------------------------------------------------------

    def file(self, relative: str) -> Path | None:
        """An output file or thumbnail under the root, or None: nothing else is served (the
        state file, the lock, manifests stay private), nor anything outside it."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        folders = path.relative_to(self.root).parts[:-1]
        if not any(part in OUTPUT_DIRS or part == THUMBS_DIR for part in folders):
            return None
        return path


def file_url(name: str) -> str:
    return "/files/" + quote(name)


def _output(done_at: float, shard: str | None, rec: JobRecord) -> dict[str, Any]:
    prefix = f"{shard}/" if shard else ""
    prompt = rec.inputs.get("prompt")
    return {
        "key": rec.key,
        "index": rec.index,
        "shard": shard,
        "model": rec.model,
        "prompt": None if prompt is None else str(shown_input(prompt)),
        "mark": rec.mark,
        "done_at": done_at,
        "cost_usd": rec.cost_usd,
        "files": [_file(prefix, f) for f in rec.files],
    }


def _file(prefix: str, f: FileRecord) -> dict[str, Any]:
    name = prefix + f.file_name
    return {
        "name": name,
        "url": file_url(name),
        "media_type": media_type(f.file_name),
        "bytes": f.bytes,
        # the thumbnail is made (once, as report.html's) when the page first asks for it
        "thumb": f"/thumbs/{quote(name)}?sha256={f.sha256}&bytes={f.bytes}",
    }
