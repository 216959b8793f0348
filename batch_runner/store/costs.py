"""Money in the state file (CONTRACT §6): each attempt's cost, each job's estimate, and what
they add up to for `status`, the summary and the `--max-cost` guard of a resumed run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from batch_runner.jobs import JobState
from batch_runner.money import usd
from batch_runner.store.journal import Journal
from batch_runner.store.migrations import SCHEMA_VERSION

MONEY_VERSION = 3  # the schema version that added attempts.cost_usd and jobs.estimate_usd
BUDGET_REASON = "budget"  # the reason of a job left pending by --max-cost
S = JobState
AT_API = frozenset({S.SUBMITTING.value, S.QUEUED.value, S.RUNNING.value, S.DOWNLOADING.value})
CLOSED = frozenset({S.FAILED.value, S.CANCELLED.value})


class Money(Journal):
    """The reads and events of money; StateStore extends it."""

    version: int = SCHEMA_VERSION

    def _money(self, column: str) -> str:
        """A cost column, or NULL in a file older than them (read-only opens do not migrate)."""
        return column if self.version >= MONEY_VERSION else "NULL"

    def set_estimates(self, prices: Iterable[tuple[int, float | None]]) -> None:
        """Each job's estimate as this run priced it (idx, USD or None for unknown)."""
        with self._tx():
            self._conn.executemany(
                "UPDATE jobs SET estimate_usd = ? WHERE idx = ?", [(p, i) for i, p in prices]
            )

    def record_cost(self, idx: int, attempt: int, cost: float) -> None:
        """What attempt number `attempt` cost, as the API said (USD; lazy: until the job is
        done, a resumed run polls /result, which says it again)."""
        self._write(
            "UPDATE attempts SET cost_usd = ? WHERE job_idx = ? AND n = ?",
            (cost, idx, attempt),
            lazy=True,
        )

    def money_jobs(self) -> Iterator[JobMoney]:
        """Every job's money facts, in index order (one pass over jobs and attempts)."""
        costs: dict[int, list[float | None]] = {}
        for idx, cost in self._conn.execute(
            f"SELECT job_idx, {self._money('cost_usd')} FROM attempts ORDER BY job_idx, n"
        ):
            costs.setdefault(idx, []).append(cost)
        for idx, model, state, reason, est, dups in self._conn.execute(
            f"SELECT idx, model, state, reason, {self._money('estimate_usd')}, "
            "possible_duplicates FROM jobs ORDER BY idx"
        ):
            yield JobMoney(idx, model, state, reason, est, dups, costs.get(idx, []))

    def model_spent(self) -> dict[str, tuple[int, float]]:
        """{MODEL: (jobs, USD its attempts cost)} for the report."""
        cost = self._money("a.cost_usd")
        rows = self._conn.execute(
            f"SELECT j.model, count(DISTINCT j.idx), coalesce(sum({cost}), 0) FROM jobs j "
            "LEFT JOIN attempts a ON a.job_idx = j.idx GROUP BY j.model"
        )
        return {model: (n, usd(spent)) for model, n, spent in rows}

    def model_counts(self) -> dict[str, dict[str, int]]:
        """{MODEL: {"jobs", "done"}} (CONTRACT §2)."""
        rows = self._conn.execute(
            "SELECT model, count(*), sum(state = ?) FROM jobs GROUP BY model ORDER BY model",
            (S.DONE.value,),
        )
        return {model: {"jobs": n, "done": done or 0} for model, n, done in rows}


@dataclass
class JobMoney:
    index: int
    model: str
    state: str
    reason: str | None
    estimate: float | None
    duplicates: int
    costs: list[float | None] = field(default_factory=list)  # per attempt, oldest first

    @property
    def in_flight(self) -> bool:
        """At the API with its charge still to come."""
        return self.state in AT_API and bool(self.costs) and self.costs[-1] is None

    @property
    def lost_submits(self) -> int:
        """Submits that may have created a job we do not know of (each may be charged)."""
        return self.duplicates + (self.state == S.UNCERTAIN.value)

    def settled(self) -> float | None:
        """What its finished attempts count for the budget: their costs, an unknown cost as
        the estimate (it may have been charged), each lost submit as one estimate more."""
        attempts = self.costs[:-1] if self.in_flight else self.costs
        unknown = sum(c is None for c in attempts) + self.lost_submits
        known = sum(c for c in attempts if c is not None)
        if unknown and self.estimate is None:
            return None
        return usd(known + unknown * (self.estimate or 0.0))


def budget_start(rows: Iterable[JobMoney]) -> tuple[float, dict[int, float]]:
    """(spent, reserved estimates of jobs in flight) for the `--max-cost` guard of a run that
    opens this state; an unknown figure counts as 0 (the estimate printed says unknown)."""
    spent, reserved = 0.0, {}
    for job in rows:
        spent += job.settled() or 0.0
        if job.in_flight:
            reserved[job.index] = job.estimate or 0.0
    return usd(spent), reserved


def cost_summary(store: Money) -> dict[str, Any]:
    """The `cost` object of `status --json` (CONTRACT §2, §6)."""
    spent, ahead, extra = 0.0, 0.0, 0.0
    unknown_ahead = unknown_extra = False
    left, left_usd = 0, 0.0
    unknown_left = False
    for job in store.money_jobs():
        known = [c for c in job.costs if c is not None]
        spent += sum(known)
        if job.duplicates:
            unknown_extra |= job.estimate is None
            extra += job.duplicates * (job.estimate or 0.0)
        # a done job never submitted here took its files from an --archive: nothing to come
        if job.state not in CLOSED and (job.state != S.DONE.value or (job.costs and not known)):
            unknown_ahead |= job.estimate is None
            ahead += job.estimate or 0.0
        if job.state == S.PENDING.value and job.reason == BUDGET_REASON:
            left += 1
            left_usd += job.estimate or 0.0
            unknown_left |= job.estimate is None
    out = {
        "spent_usd": usd(spent),
        "estimated_usd": None if unknown_ahead else usd(spent + ahead),
        "possible_extra_usd": None if unknown_extra else usd(extra),
    }
    if left:
        out["left_by_budget"] = {
            "jobs": left,
            "estimated_usd": None if unknown_left else usd(left_usd),
        }
    return out
