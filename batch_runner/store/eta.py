"""`eta_s` (CONTRACT §2, release 3): seconds until every job now known is finished, from what
the state file has learned, so `status`, `serve` and the run's own summary give the same
figure. None until a job has been done by this state's clock (nothing learned yet).

Model (Little's law): a job spends W seconds from its submit to its files on disk (queue,
generation and download included: the mean of the last RECENT jobs done), and C jobs are in
flight at once (those in flight now while others wait, else the run's --concurrency). Slots
free at C / W per second, so the U jobs not yet started have all started after U·W/C, and
the last of them is done about W90 later (the 90th percentile of those durations: a run
ends with the slowest of its last jobs); with none waiting, the youngest job in flight is
done about W90 after its submit. Jobs left pending by --max-cost are not counted: no run sends them.
"""

from __future__ import annotations

import json
import sqlite3
import time

from batch_runner.jobs import JobState
from batch_runner.store.costs import AT_API, BUDGET_REASON

RECENT = 200  # completions the durations are taken over (a changing API is followed)
TAIL_QUANTILE = 0.9
S = JobState
_IN_FLIGHT = tuple(sorted(AT_API))  # the states at the API (store/costs.py), as SQL parameters


def eta_seconds(conn: sqlite3.Connection, now: float | None = None) -> float | None:
    now = time.time() if now is None else now
    waiting = conn.execute(
        "SELECT count(*) FROM jobs WHERE state = ? AND coalesce(reason, '') != ?",
        (S.PENDING.value, BUDGET_REASON),
    ).fetchone()[0]
    marks = ",".join("?" * len(_IN_FLIGHT))
    flying, youngest = conn.execute(
        f"SELECT count(*), max(a.submitted_at) FROM jobs j LEFT JOIN attempts a "
        f"ON a.job_idx = j.idx AND a.n = j.attempts WHERE j.state IN ({marks})",
        _IN_FLIGHT,
    ).fetchone()
    if waiting + flying == 0:
        return 0.0
    durations = _durations(conn)
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    # the run ends with the slowest of its last jobs, not with a typical one
    tail = durations[min(len(durations) - 1, int(TAIL_QUANTILE * len(durations)))]
    if waiting:
        slots = flying if flying else _concurrency(conn)
        return round(waiting * mean / max(slots, 1) + tail, 1)
    age = now - youngest if youngest is not None else 0.0
    return round(max(tail - age, 0.0), 1)


def _durations(conn: sqlite3.Connection) -> list[float]:
    """Submit to done of the last RECENT jobs done, sorted."""
    rows = conn.execute(
        "SELECT j.updated_at - a.submitted_at FROM jobs j "
        "JOIN attempts a ON a.job_idx = j.idx AND a.n = j.attempts "
        "WHERE j.state = ? AND j.updated_at >= a.submitted_at "
        "ORDER BY j.updated_at DESC LIMIT ?",
        (S.DONE.value, RECENT),
    )
    return sorted(d for (d,) in rows)


def _concurrency(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
    try:
        return int((json.loads(row[0]) or {}).get("concurrency", 8)) if row else 8
    except (ValueError, TypeError, AttributeError):
        return 8
