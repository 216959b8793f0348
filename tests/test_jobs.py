"""Job states: the transition table the runner checks every move against."""

from __future__ import annotations

from batch_runner import jobs, load_jobs
from batch_runner.jobs import JobSpec, JobState, can_move, job_key

S = JobState


def test_the_life_of_a_job_is_allowed():
    life = [S.PENDING, S.SUBMITTING, S.QUEUED, S.RUNNING, S.DOWNLOADING, S.DONE]
    assert all(can_move(a, b) for a, b in zip(life, life[1:], strict=False))


def test_lost_answers_and_refusals():
    assert can_move(S.SUBMITTING, S.UNCERTAIN) and can_move(S.UNCERTAIN, S.SUBMITTING)
    assert can_move(S.SUBMITTING, S.PENDING)  # refused before anything was created
    assert not can_move(S.PENDING, S.QUEUED)  # a request_id only comes after submitting


def test_failed_only_goes_back_to_pending_cancelled_is_final_done_only_refetches():
    assert [s for s in S if can_move(S.FAILED, s)] == [S.PENDING]  # --retry-failed
    assert not any(can_move(S.CANCELLED, s) for s in S)
    assert [s for s in S if can_move(S.DONE, s)] == [S.DOWNLOADING]


def test_keys_depend_on_model_inputs_and_copy_only():
    a = job_key("m", {"prompt": "x", "resolution": "2K"}, 0)
    assert a == job_key("m", {"resolution": "2K", "prompt": "x"}, 0)
    assert a != job_key("m", {"prompt": "x", "resolution": "2K"}, 1)
    assert a != job_key("n", {"prompt": "x", "resolution": "2K"}, 0)


def test_a_spec_hashes_its_key_once(monkeypatch):
    calls = []
    real = jobs.job_key
    monkeypatch.setattr(jobs, "job_key", lambda *a: calls.append(a) or real(*a))
    spec = JobSpec("m", {"prompt": "x"}, copy=2)
    assert spec.key == spec.key == real("m", {"prompt": "x"}, 2)
    assert len(calls) == 1


def test_duplicates_are_found_by_the_key_itself(tmp_path):
    """Same inputs (as the key sees them) are further copies; different ones are not, even
    where Python's equality says otherwise (-0.0 equals 0.0). NaN never gets this far: a
    manifest may not hold it (tests/test_manifest_edges.py)."""
    manifest = tmp_path / "d.yaml"
    manifest.write_text(
        "model: acme/no-schema\njobs:\n"
        "  - {prompt: a, weight: 0.5}\n  - {prompt: a, weight: 0.5}\n"
        "  - {prompt: b, weight: 0.0}\n  - {prompt: b, weight: -0.0}\n",
        encoding="utf-8",
    )
    found = load_jobs(manifest)
    assert [(j.inputs["prompt"], j.copy) for j in found.jobs] == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 0),
    ]
    assert len({j.key for j in found.jobs}) == 4  # every job reaches the state file
    assert sum("same inputs" in w for w in found.warnings) == 1
