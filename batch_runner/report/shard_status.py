"""`status RUN_DIR` over a folder of shards: the shards' summaries added up, and one line per
shard (state, counts, last activity) so a stuck or failing shard stands out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from batch_runner.report.merge import add_up, open_shards

MAX_FAILURES = 1000
_IN_FLIGHT = ("pending", "submitting", "queued", "running", "downloading")


def shards_summary(run_dir: Path, *, now: float | None = None) -> dict[str, Any]:
    """The `status --json` object of every shard added up, with `"shards": {NAME: {...}}`."""
    now = time.time() if now is None else now
    total: dict[str, Any] = {"jobs": 0, "counts": {}, "files": 0}
    shards: dict[str, Any] = {}
    with open_shards(run_dir) as (runs, waiting):
        for run in runs:
            summary = run.store.summary()
            for failure in summary.get("failures", []):
                failure["shard"] = run.name
            total = add_up(total, summary)
            shards[run.name] = _shard_line(summary, run.store.last_activity(), now)
        for name in waiting:
            shards[name] = {"state": "waiting", "jobs": 0, "counts": {}, "files": 0}
    total["failures"] = total.get("failures", [])[:MAX_FAILURES]
    # shards run side by side: the folder is done when its slowest shard is (None: unknown)
    etas = [line.get("eta_s") for line in shards.values() if line["state"] != "waiting"]
    total["eta_s"] = None if not etas or None in etas else max(etas)
    total["shards"] = dict(sorted(shards.items(), key=lambda item: _order(item[0])))
    return total


def _shard_line(summary: dict[str, Any], last: float | None, now: float) -> dict[str, Any]:
    counts = summary["counts"]
    return {
        "state": _state(counts),
        "jobs": summary["jobs"],
        "counts": counts,
        "files": summary["files"],
        "eta_s": summary.get("eta_s"),
        "possible_duplicates": summary.get("possible_duplicates", 0),
        "last_activity": (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last is not None else None
        ),
        "idle_seconds": round(now - last, 1) if last is not None else None,
    }


def _state(counts: dict[str, int]) -> str:
    """done: every job done; unfinished: jobs still to submit, in flight or to download (a
    shard whose idle_seconds grow is stuck or stopped); finished: nothing left to do, but some
    jobs failed, were cancelled or are uncertain."""
    if any(counts.get(s) for s in _IN_FLIGHT):
        return "unfinished"
    if set(counts) <= {"done"}:
        return "done"
    return "finished"


def _order(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("-") if part.isdigit())
