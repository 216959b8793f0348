"""Prices, estimates and the --max-cost ledger as pure functions (CONTRACT §6)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from batch_runner.catalog import CatalogEntry, bundled
from batch_runner.money import Estimate, dollars, estimate, fitting, job_price
from batch_runner.run.budget import Budget

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
VIDEO = "wan-ai/wan-3.0/text-to-video"  # duration: integer, default 5, 2..30


def priced(model: str, price: float | None, unit: str | None) -> CatalogEntry:
    return dataclasses.replace(bundled()[model], base_price_usd=price, price_unit=unit)


def test_a_per_output_job_costs_its_price_per_file_and_the_most_files_it_may_return():
    entry = priced(SEEDREAM, 0.03, "output")
    assert job_price(entry, {"prompt": "a"}) == 0.03
    # sequential generation "auto" may return up to max_images (default 15): an upper bound
    assert job_price(entry, {"prompt": "a", "sequential_image_generation": "auto"}) == 0.45
    auto4 = {"prompt": "a", "sequential_image_generation": "auto", "max_images": 4}
    assert job_price(entry, auto4) == 0.12


def test_a_per_second_job_costs_its_price_times_its_duration_or_the_schema_default():
    entry = priced(VIDEO, 0.1, "second")
    assert job_price(entry, {"prompt": "a", "duration": 4}) == 0.4
    assert job_price(entry, {"prompt": "a"}) == 0.5  # default 5 s


def test_an_unknown_price_is_unknown_never_zero():
    assert job_price(None, {"prompt": "a"}) is None
    assert job_price(priced(SEEDREAM, None, "output"), {"prompt": "a"}) is None
    assert job_price(priced(SEEDREAM, 0.03, "token"), {"prompt": "a"}) is None
    no_duration = dataclasses.replace(priced(VIDEO, 0.1, "second"), input_schema={})
    assert job_price(no_duration, {"prompt": "a"}) is None
    assert job_price(priced(SEEDREAM, 0.0, "output"), {"prompt": "a"}) == 0.0  # free is known


def test_the_estimate_sums_per_model_and_counts_unknown_jobs():
    entries = {SEEDREAM: priced(SEEDREAM, 0.03, "output"), VIDEO: None}
    jobs = [(SEEDREAM, {"prompt": str(i)}) for i in range(10)] + [(VIDEO, {"prompt": "v"})]
    est, prices = estimate(jobs, entries)
    assert est.total == 0.3 and est.unknown == 1 and est.jobs == 11
    assert est.known_total is None  # a partial sum is no estimate
    assert est.per_model[SEEDREAM] == {"jobs": 10, "estimated_cost_usd": 0.3}
    assert est.per_model[VIDEO]["estimated_cost_usd"] is None
    assert "unknown for 1 job:" in est.text() and "$0.30" in est.text()
    assert prices[-1] is None and prices[0] == 0.03
    all_unknown = Estimate()
    all_unknown.add(VIDEO, None)
    assert "unknown" in all_unknown.text() and "$" not in all_unknown.text()


def test_fitting_counts_the_jobs_a_budget_covers_in_order():
    assert fitting([0.3, 0.3, 0.3, None, 0.1], 0.7) == (3, 0.7)
    assert fitting([1.0, None], 0.5) == (0, 0.0)


def test_dollars_shows_cents_and_smaller_amounts_with_their_digits():
    assert dollars(0.9) == "$0.90" and dollars(12) == "$12.00"
    assert dollars(0.035) == "$0.035" and dollars(None) == "unknown"


def test_the_budget_reserves_while_spent_plus_committed_plus_its_estimate_fits():
    budget = Budget(1.0, spent=0.2)
    assert budget.reserve(1, 0.5) and budget.reserve(1, 0.5)  # idempotent per job
    assert not budget.reserve(2, 0.5)  # 0.2 + 0.5 + 0.5 > 1.0
    assert budget.reserve(3, 0.3)  # exactly 1.0 fits
    budget.settle(1, 0.1)  # cost less than its upper bound: room again
    assert budget.spent == pytest.approx(0.3) and budget.reserve(2, 0.4)
    budget.settle(3, None)  # no cost given: its estimate counts as spent
    assert budget.spent == pytest.approx(0.6)
    budget.release(2)  # not sent after all
    assert budget.committed == 0 and budget.spent == pytest.approx(0.6)
    assert not Budget(1.0).reserve(9, None)  # an unknown price never fits a budget
    assert Budget(None).reserve(9, None)  # no budget: everything fits


def test_a_lost_submit_counts_as_spent_before_the_job_is_sent_again():
    budget = Budget(1.0)
    assert budget.reserve(1, 0.4)
    budget.settle(1, None)  # the answer was lost: it may have been charged
    assert budget.reserve(1, 0.4)  # sent again: 0.4 spent + 0.4 committed
    assert not budget.reserve(2, 0.4)


async def test_concurrent_workers_never_overshoot_together():
    budget = Budget(1.0)
    charged: list[float] = []

    async def worker(idx: int) -> None:
        if await budget.wait_reserve(idx, 0.3, lambda: False):
            await asyncio.sleep(0.001 * (idx % 3))
            charged.append(0.3)
            budget.settle(idx, 0.3)

    await asyncio.gather(*(worker(i) for i in range(16)))
    assert sum(charged) <= 1.0 and len(charged) == 3


async def test_a_waiting_job_goes_ahead_when_jobs_in_flight_cost_less_than_reserved():
    budget = Budget(1.0)
    assert budget.reserve(1, 0.9)
    waiting = asyncio.create_task(budget.wait_reserve(2, 0.5, lambda: False))
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.settle(1, 0.2)  # it returned fewer images than it might have
    assert await waiting and budget.committed == 0.5


def test_the_report_shows_each_jobs_cost_the_total_and_each_model():
    from batch_runner.jobs import JobRecord, JobState
    from batch_runner.report.page import render_report

    def job(i: int, model: str, cost: float | None) -> JobRecord:
        return JobRecord(f"k{i}", i, model, {"prompt": f"p{i}"}, JobState.DONE, cost_usd=cost)

    page = render_report(
        [job(1, SEEDREAM, 0.03), job(2, VIDEO, 0.5), job(3, VIDEO, None)], title="t"
    ).replace("<wbr>", "")  # model ids may wrap after each '/'
    assert 'class="cost" title="cost of this job">$0.03<' in page
    assert "cost $0.53" in page  # the total
    assert f"<td>{VIDEO}</td><td>2</td><td>$0.50</td>" in page  # per model
