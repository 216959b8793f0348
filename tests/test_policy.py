"""The retry classification table (one test per row), backoff, and the adaptive poll planner."""

from __future__ import annotations

import errno
import math
import random

import pytest

from batch_runner.api.policy import Action, backoff, classify, retry_delay
from batch_runner.errors import AccountError, ApiError, DownloadError, TransportError
from batch_runner.run.polling import PollPlanner


def api(kind: str, status: int | None = None, code: int | None = None, **kw) -> ApiError:
    return ApiError("x", kind=kind, status=status, error_code=code, **kw)


# ---- any op -------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["submit", "poll", "cancel", "download"])
def test_account_error_stops_the_run(op):
    assert classify(AccountError("bad token"), op).action is Action.STOP


# ---- submit -------------------------------------------------------------------------------


def test_submit_429_retries_with_server_delay():
    decision = classify(api("429", 429, retry_after=4.0), "submit")
    assert (decision.action, decision.cause, decision.delay) == (Action.RETRY, "429", 4.0)


def test_submit_408_retries():
    assert classify(api("4xx", 408), "submit").action is Action.RETRY


@pytest.mark.parametrize(
    ("status", "code"), [(400, 400001), (403, 403001), (404, None), (422, 422001)]
)
def test_submit_4xx_fails(status, code):
    decision = classify(api("4xx", status, code), "submit")
    assert (decision.action, decision.cause) == (Action.FAIL, "4xx")


@pytest.mark.parametrize("status", [500, 503, 200])
def test_submit_5xx_with_error_body_retries(status):
    decision = classify(api("5xx", status, 500001), "submit")
    assert (decision.action, decision.cause) == (Action.RETRY, "5xx")


@pytest.mark.parametrize("status", [502, 504])
def test_submit_gateway_errors_are_ambiguous(status):
    assert classify(api("5xx", status, 500001), "submit").action is Action.AMBIGUOUS


def test_submit_bare_5xx_is_ambiguous():
    assert classify(api("5xx", 500), "submit").action is Action.AMBIGUOUS


@pytest.mark.parametrize("kind", ["dropped", "timeout"])
def test_submit_lost_after_sending_is_ambiguous(kind):
    decision = classify(TransportError("lost", kind=kind, sent=True), "submit")
    assert (decision.action, decision.cause) == (Action.AMBIGUOUS, kind)


@pytest.mark.parametrize("kind", ["dropped", "timeout"])
def test_submit_not_sent_retries(kind):
    decision = classify(TransportError("refused", kind=kind, sent=False), "submit")
    assert decision.action is Action.RETRY


@pytest.mark.parametrize("error", [api("bad_answer", 200), TransportError("x", kind="bad_answer")])
def test_submit_bad_answer_is_ambiguous(error):
    assert classify(error, "submit").action is Action.AMBIGUOUS


def test_submit_raw_timeout_is_ambiguous():
    assert classify(TimeoutError(), "submit").action is Action.AMBIGUOUS


# ---- poll / cancel ------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["poll", "cancel"])
@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (api("429", 429), "429"),
        (api("5xx", 502), "5xx"),
        (api("5xx", 200, 500001), "5xx"),
        (TransportError("x", kind="dropped"), "dropped"),
        (TransportError("x", kind="timeout"), "timeout"),
        (TransportError("x", kind="bad_answer"), "bad_answer"),
        (api("bad_answer", 200), "bad_answer"),
    ],
)
def test_poll_transient_errors_retry(op, error, cause):
    decision = classify(error, op)
    assert (decision.action, decision.cause) == (Action.RETRY, cause)


def test_poll_404001_is_expired():
    assert classify(api("expired", 404, 404001), "poll").action is Action.EXPIRED


def test_poll_unknown_status_fails():
    decision = classify(api("unknown_status"), "poll")
    assert (decision.action, decision.cause) == (Action.FAIL, "unknown_status")


@pytest.mark.parametrize(("status", "code"), [(403, 403001), (400, None), (200, 422001)])
def test_poll_other_4xx_fails(status, code):
    assert classify(api("4xx", status, code), "poll").action is Action.FAIL


# ---- download -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
def test_download_expired_url_refreshes(status):
    decision = classify(DownloadError("x", status=status, kind="expired_url"), "download")
    assert (decision.action, decision.cause) == (Action.REFRESH, "expired_url")


@pytest.mark.parametrize("kind", ["truncated", "dropped", "timeout", "5xx", "429"])
def test_download_transient_retries(kind):
    decision = classify(DownloadError("x", kind=kind), "download")
    assert (decision.action, decision.cause) == (Action.RETRY, kind)


@pytest.mark.parametrize(
    "kind", ["host_refused", "too_big", "bad_file", "bad_name", "bad_redirect", "4xx"]
)
def test_download_permanent_fails(kind):
    assert (
        classify(
            DownloadError("x", kind=kind, status=400 if kind == "4xx" else None), "download"
        ).action
        is Action.FAIL
    )


def test_download_disk_full_stops_other_io_fails():
    assert classify(OSError(errno.ENOSPC, "full"), "download").action is Action.STOP
    assert classify(OSError(errno.EACCES, "denied"), "download").action is Action.FAIL


def test_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError):
        classify(api("5xx", 500), "explode")


# ---- backoff ------------------------------------------------------------------------------


def test_backoff_full_jitter_bounds():
    rng = random.Random(1)
    for attempt in range(12):
        top = min(30.0, 0.5 * 2**attempt)
        samples = [backoff(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= s <= top for s in samples)
        assert max(samples) > top * 0.8  # full jitter spreads over the whole range


def test_backoff_survives_huge_and_negative_attempts():
    rng = random.Random(2)
    assert 0 <= backoff(10_000, rng=rng) <= 30.0
    assert 0 <= backoff(-3, rng=rng) <= 0.5


def test_retry_delay_honours_retry_after_and_caps_it():
    rng = random.Random(3)
    assert retry_delay(api("429", 429, retry_after=12.0), 0, rng) >= 12.0
    assert retry_delay(api("429", 429, retry_after=1e9), 0, rng) == 300.0
    assert retry_delay(api("429", 429, retry_after=float("nan")), 0, rng) <= 0.5
    assert retry_delay(RuntimeError("no retry_after"), 1, rng) <= 1.0


# ---- poll planner -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def trained(runs: list[float], gap: float = 0.0) -> tuple[PollPlanner, Clock]:
    """A planner that saw jobs start at once and run `runs` seconds, `gap` s apart."""
    clock = Clock()
    planner = PollPlanner(clock=clock)
    for run in runs:
        t = planner.track(clock.now, clock.now)
        planner.seen(t, "in_progress", None)
        clock.now += run
        planner.completed(t, run)
        clock.now += gap
    return planner, clock


def test_planner_first_poll_is_immediate_before_any_observation():
    planner = PollPlanner(clock=Clock())
    assert planner.next_delay(planner.track()) == 0.0
    t = planner.track(planner.clock(), planner.clock())
    assert planner.next_delay(t) == 0.0


def test_planner_backs_off_without_observations():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    t = planner.track(clock.now, clock.now)
    delays = []
    for _ in range(8):
        planner.seen(t, "in_progress", None)
        delays.append(planner.next_delay(t))
        clock.now += delays[-1]
    assert delays == sorted(delays) and delays[-1] == planner.prior / 10


def test_planner_instant_jobs_cost_no_waiting():
    planner, clock = trained([0.0] * 20)
    assert planner.next_delay(planner.track(clock.now, clock.now)) == 0.0


def test_planner_asks_at_once_when_the_plan_is_finer_than_the_submit_round_trip():
    planner, clock = trained([0.004] * 16)  # jobs that take a few ms
    t = planner.track(clock.now - 0.010, clock.now)  # this submit took 10 ms to answer
    assert planner.next_delay(t) == 0.0
    u = planner.track(clock.now - 0.0001, clock.now)  # a quick answer: the plan stands
    assert planner.next_delay(u) == pytest.approx(0.004)


def test_planner_fixed_jobs_are_polled_at_their_duration_then_finely():
    planner, clock = trained([1.0] * 16)
    t = planner.track(clock.now, clock.now)
    assert planner.next_delay(t) == pytest.approx(1.0)
    clock.now += 1.0
    planner.seen(t, "in_progress", None)
    assert planner.next_delay(t) <= 2 * PollPlanner.STEP_FLOOR


def test_planner_spread_jobs_are_polled_across_their_window():
    planner, clock = trained([4 + i * 0.25 for i in range(17)])  # 4..8 s
    t = planner.track(clock.now, clock.now)
    times = []
    for _ in range(6):
        clock.now += planner.next_delay(t)
        times.append(clock.now - t.submitted)
        planner.seen(t, "in_progress", None)
    assert 4.0 <= times[0] <= 8.0  # no poll before the shortest run
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(s <= PollPlanner.DENSE_MAX + 1e-9 for s in steps[:2])
    assert steps == sorted(steps)  # past the window: back-off


def test_planner_queued_job_waits_for_the_queue_to_drain():
    planner, clock = trained([0.5] * 16)  # a completion every 0.5 s
    t = planner.track(clock.now, clock.now)
    planner.seen(t, "in_queue", 10)
    far = planner.next_delay(t)
    u = planner.track(clock.now, clock.now)
    planner.seen(u, "in_queue", 1)
    near = planner.next_delay(u)
    assert far > near + 3 and near >= 0.5


def test_planner_learns_waits_from_queued_jobs():
    planner, clock = trained([5.0] * 16)
    for _ in range(16):  # every job waited 3 s, then ran 5 s
        t = planner.track(clock.now, clock.now)
        clock.now += 3.0
        planner.seen(t, "in_progress", None)
        clock.now += 5.0
        planner.completed(t, 8.0)
    t = planner.track(clock.now, clock.now)
    assert planner.next_delay(t) >= 7.0


def test_planner_ignores_nonsense_durations():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    for d in (float("nan"), -1.0, float("inf")):
        t = planner.track(clock.now, clock.now)
        clock.now += 1.0
        planner.completed(t, d)
    assert all(math.isfinite(v) for v in planner._runs._sorted)


def test_planner_queued_job_waits_for_its_turn_while_the_run_is_busy():
    planner, clock = trained([4 + i * 0.25 for i in range(17)])  # 4..8 s
    running = [planner.track(clock.now, clock.now) for _ in range(2)]
    for r in running:
        planner.seen(r, "in_progress", None)
    t = planner.track(clock.now, clock.now)
    planner.seen(t, "in_queue", 2)
    assert planner.next_delay(t) > 8 and t.wake  # nothing moves it before a completion
    clock.now += 4.0
    planner.completed(running[0], 4.0)
    assert planner.next_delay(t) > 4 and t.wake  # one completion: still one job ahead
    clock.now += 1.0
    planner.completed(running[1], 5.0)
    delay = planner.next_delay(t)  # its turn came at the second end: it runs 4..8 s from there
    assert not t.wake and t.start_hi == pytest.approx(clock.now)
    assert 3.0 <= delay <= 8.0


def test_planner_blind_polls_of_jobs_submitted_together_are_staggered():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    tracks = [planner.track(clock.now, clock.now) for _ in range(8)]
    firsts = []
    for t in tracks:
        planner.seen(t, "in_progress", None)
        firsts.append(planner.next_delay(t))
        assert t.wake  # the first completion re-plans them
    assert len(set(firsts)) == len(firsts)
    assert all(planner.min_delay <= d < planner.min_delay * PollPlanner.BLIND_RATIO for d in firsts)


def test_planner_overdue_job_is_polled_at_once_when_the_first_completion_arrives():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    a, b = planner.track(clock.now, clock.now), planner.track(clock.now, clock.now)
    for t in (a, b):
        planner.seen(t, "in_progress", None)
    clock.now += 0.5
    planner.seen(b, "in_progress", None)  # b was last polled before a's run was over
    clock.now += 0.5
    planner.completed(a, 1.0)
    assert planner.next_delay(b) == 0.0 and not b.wake
