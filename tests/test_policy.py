"""The retry classification table (one test per row) and backoff (the planner: test_polling)."""

from __future__ import annotations

import errno
import random

import pytest

from batch_runner.api.policy import Action, backoff, classify, retry_delay
from batch_runner.errors import AccountError, ApiError, DownloadError, TransportError


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
