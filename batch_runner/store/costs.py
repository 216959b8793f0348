"""Money in the state file (CONTRACT §6): each attempt's cost, each job's estimate, and what
they add up to for `status`, the summary and the `--max-cost` guard of a resumed run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from batch_runner.jobs import JobState
from batch_runner.money import usd
from batch_runner.store.journal import Journal
from batch_runner.store.migrations import SCHEMA_VERSION

MONEY_VERSION = 3  # the schema version that added attempts.cost_usd and jobs.estimate_usd
BUDGET_REASON = "budget"  # the reason of a job left pending by --max-cost
S = JobState
AT_API = frozenset({S.SUBMITTING.value, S.QUEUED.value, S.RUNNING.value, S.DOWNLOADING.value})
CLOSED = frozenset({S.FAILED.value, S.CANCELLED.value})


class PriceRow(NamedTuple):
    """A job as pricing sees it (the names of JobRecord's fields)."""

    index: int
    model: str
    inputs: dict[str, Any]
    state: JobState
    estimate_usd: float | None
    duplicates: int


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

    def price_rows(self, batch: int = 2000) -> Iterator[PriceRow]:
        """What pricing reads of every job, in index order, `batch` rows at a time: no files,
        attempts or job records (run/pricing.py; a pipeline's forecast reads whole records)."""
        last = 0
        while True:
            rows = self._conn.execute(
                f"SELECT idx, model, inputs, state, {self._money('estimate_usd')}, "
                f"possible_duplicates FROM jobs WHERE idx > ? ORDER BY idx LIMIT {int(batch)}",
                (last,),
            ).fetchall()
            for idx, model, inputs, state, est, dups in rows:
                yield PriceRow(idx, model, json.loads(inputs), S(state), est, dups or 0)
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def model_spent(self) -> dict[str, tuple[int, float]]:
        """{MODEL: (jobs, USD its attempts cost)} for the report."""
        cost = self._money("a.cost_usd")
        rows = self._conn.execute(
            f"SELECT j.model, count(DISTINCT j.idx), coalesce(sum({cost}), 0) FROM jobs j "
            "LEFT JOIN attempts a ON a.job_idx = j.idx GROUP BY j.model"
        )
        return {model: (n, usd(spent)) for model, n, spent in rows}

    def model_counts(self, groups: list[JobGroup] | None = None) -> dict[str, dict[str, int]]:
        """{MODEL: {"jobs", "done"}} (CONTRACT §2), from `groups` if given."""
        out: dict[str, dict[str, int]] = {}
        for g in self.job_groups() if groups is None else groups:
            row = out.setdefault(g.model, {"jobs": 0, "done": 0})
            row["jobs"] += g.jobs
            row["done"] += g.jobs if g.state == S.DONE.value else 0
        return dict(sorted(out.items()))

    def job_groups(self) -> list[JobGroup]:
        """The jobs counted by what the summaries tell apart, in one statement: one pass over
        the index `jobs_totals` (migration 8), never the rows (a few dozen groups, and one
        per distinct reason a job was left with)."""
        est = self._money("estimate_usd")
        rows = self._conn.execute(
            f"SELECT {_GROUPED}, count(*), total({est}), count({est}) FROM jobs GROUP BY {_GROUPED}"
        )
        return [JobGroup(*row) for row in rows]

    def attempt_money(self) -> tuple[float, Unbilled]:
        """(what every attempt's known cost adds up to, the done jobs whose attempts all lack
        one: they may still be charged)."""
        cost, est = self._money("cost_usd"), self._money("j.estimate_usd")
        spent = self._conn.execute(f"SELECT total({cost}) FROM attempts").fetchone()[0]
        row = self._conn.execute(
            f"SELECT count(*), total({est}), count({est}) FROM "
            # the attempts without a cost are few: a scan finds them sooner than the index
            f"(SELECT DISTINCT job_idx FROM attempts NOT INDEXED WHERE {cost} IS NULL) n "
            "JOIN jobs j ON j.idx = n.job_idx WHERE j.state = ? AND NOT EXISTS (SELECT 1 FROM "
            f"attempts a WHERE a.job_idx = j.idx AND {self._money('a.cost_usd')} IS NOT NULL)",
            (S.DONE.value,),
        ).fetchone()
        return spent, Unbilled(*row)


# what job_groups tells apart: the leading columns of the index jobs_totals, in its order
_GROUPED = "state, model, reason, possible_duplicates, in_manifest"


@dataclass(frozen=True)
class JobGroup:
    """The jobs alike in what the summaries count, with their estimates added up."""

    state: str
    model: str
    reason: str | None
    duplicates: int
    in_manifest: int
    jobs: int
    estimate: float  # the sum of the known estimates
    estimated: int  # how many have one

    @property
    def unknown(self) -> bool:
        """Some of them have no estimate."""
        return self.estimated < self.jobs


@dataclass(frozen=True)
class Unbilled:
    jobs: int
    estimate: float
    estimated: int


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


def cost_summary(store: Money, groups: list[JobGroup] | None = None) -> dict[str, Any]:
    """The `cost` object of `status --json` (CONTRACT §2, §6), from `groups` if given
    (Money.job_groups): SQL sums, no pass over the jobs here."""
    spent, unbilled = store.attempt_money()
    # a done job never submitted here took its files from an --archive: nothing to come; one
    # submitted whose attempts have no known cost may still be charged
    ahead, unknown_ahead = unbilled.estimate, unbilled.estimated < unbilled.jobs
    extra, unknown_extra = 0.0, False
    left, left_usd, unknown_left = 0, 0.0, False
    for g in store.job_groups() if groups is None else groups:
        if g.duplicates:
            unknown_extra |= g.unknown
            extra += g.duplicates * g.estimate
        if g.state not in CLOSED and g.state != S.DONE.value:
            unknown_ahead |= g.unknown
            ahead += g.estimate
        if g.state == S.PENDING.value and g.reason == BUDGET_REASON:
            left += g.jobs
            left_usd += g.estimate
            unknown_left |= g.unknown
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
