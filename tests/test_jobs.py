"""Job states: the transition table the runner checks every move against."""

from __future__ import annotations

from batch_runner.jobs import JobState, can_move, job_key

S = JobState


def test_the_life_of_a_job_is_allowed():
    life = [S.PENDING, S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING, S.DONE]
    assert all(can_move(a, b) for a, b in zip(life, life[1:], strict=False))


def test_lost_answers_and_refusals():
    assert can_move(S.SUBMITTING, S.UNCERTAIN) and can_move(S.UNCERTAIN, S.SUBMITTING)
    assert can_move(S.SUBMITTING, S.PENDING)  # refused before anything was created
    assert not can_move(S.PENDING, S.QUEUED)  # a request_id only comes after submitting


def test_failed_and_cancelled_are_final_done_only_refetches():
    assert not any(can_move(S.FAILED, s) for s in S)
    assert not any(can_move(S.CANCELLED, s) for s in S)
    assert [s for s in S if can_move(S.DONE, s)] == [S.DOWNLOADING]


def test_keys_depend_on_model_inputs_and_copy_only():
    a = job_key("m", {"prompt": "x", "resolution": "2K"}, 0)
    assert a == job_key("m", {"resolution": "2K", "prompt": "x"}, 0)
    assert a != job_key("m", {"prompt": "x", "resolution": "2K"}, 1)
    assert a != job_key("n", {"prompt": "x", "resolution": "2K"}, 0)
