"""Jobs left `uncertain` (a submit's answer was lost) and how to finish them: `--resubmit-uncertain`
sends each once more, this run only, past the automatic bound, counted as a possible duplicate
and against --max-cost (CONTRACT §2, release 3). Through the CLI against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, sim_env, write_manifest

from batch_runner.jobs import JobState
from batch_runner.run.uncertain import MAX_LOST_SUBMITS, loss_bound, sends
from batch_runner.settings import RunSettings

pytestmark = pytest.mark.timeout(120)

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"
U, P = JobState.UNCERTAIN, JobState.PENDING


def _lost_sim(make_sim, *args: str):
    """A simulator that creates every submitted job and loses every submit answer."""
    return make_sim(
        "--lost-submit-rate", "1.0", "--latency", "0.05:0.1", "--image-scale", "0.02", *args
    )  # fmt: skip


def _cli(*args, env) -> tuple[int, dict, str]:
    res = run_cli(*args, "--json", "--no-progress", env=env)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout), res.stderr


def _three_uncertain(make_sim, tmp_path: Path, *sim_args: str):
    sim = _lost_sim(make_sim, *sim_args)
    out, env = tmp_path / "run", sim_env(sim)
    manifest = write_manifest(tmp_path / "m.yaml", ["a fox", "an owl", "a cat"])
    code, summary, err = _cli("run", manifest, "--out", out, env=env)
    assert code == 1, err
    assert summary["counts"] == {"uncertain": 3}
    assert sim.stats()["submitted"] == 6  # the automatic bound: 2 lost answers each
    assert f"batch-runner resume {out} --resubmit-uncertain" in err
    return sim, out, env


def test_resubmit_uncertain_sends_each_once_more_and_only_when_asked(make_sim, tmp_path):
    sim, out, env = _three_uncertain(make_sim, tmp_path)

    # a plain resume (and --retry-failed) sends nothing and claims no cost for them
    for extra in ((), ("--retry-failed",)):
        code, summary, err = _cli("resume", out, *extra, env=env)
        assert code == 1 and summary["counts"] == {"uncertain": 3}
        assert "estimated cost" not in err, err
        assert "--resubmit-uncertain" in err
    assert sim.stats()["submitted"] == 6

    # asked for: exactly one more submit each, past the bound; lost again, they stay uncertain
    code, summary, err = _cli("resume", out, "--resubmit-uncertain", env=env)
    assert code == 1 and summary["counts"] == {"uncertain": 3}
    assert sim.stats()["submitted"] == 9
    assert summary["possible_duplicates"] == 6
    assert f"batch-runner resume {out} --resubmit-uncertain" in err
    assert all(f["reason"].startswith("3 submit answers lost") for f in summary["failures"])

    # the flag is for that run only: the next plain resume sends nothing again
    code, summary, _ = _cli("resume", out, env=env)
    assert code == 1 and sim.stats()["submitted"] == 9

    sim.post("/_sim/config", {"lost_submit_rate": 0})
    code, summary, err = _cli("resume", out, "--resubmit-uncertain", env=env)
    assert code == 0, err
    assert summary["counts"] == {"done": 3} and summary["files"] == 3
    assert sim.stats()["submitted"] == 12
    assert summary["possible_duplicates"] == 9  # every submit after a lost answer
    assert "--resubmit-uncertain" not in err

    code, summary, _ = _cli("resume", out, env=env)
    assert code == 0 and summary["counts"] == {"done": 3}
    assert sim.stats()["submitted"] == 12


def test_status_names_the_command(make_sim, tmp_path):
    _, out, _ = _three_uncertain(make_sim, tmp_path)
    res = run_cli("status", out)
    assert res.returncode == 0, res.stderr
    assert "uncertain: 3 jobs" in res.stdout
    assert f"batch-runner resume {out} --resubmit-uncertain" in res.stdout


def test_resubmitted_uncertain_jobs_count_against_max_cost(make_sim, tmp_path):
    sim, out, env = _three_uncertain(make_sim, tmp_path, "--price", f"{SEEDREAM}=0.1")
    sim.post("/_sim/config", {"lost_submit_rate": 0})
    # 6 lost answers count as $0.60 spent: $0.75 leaves room for one more submit, not two
    code, summary, err = _cli("resume", out, "--resubmit-uncertain", "--max-cost", "0.75", env=env)
    assert code == 1, err
    assert sim.stats()["submitted"] == 7
    assert summary["counts"] == {"done": 1, "uncertain": 2}
    reasons = [f["reason"] for f in summary["failures"]]
    assert all("--max-cost" in r for r in reasons), reasons


def test_with_no_resubmit_uncertain_a_lost_answer_waits_for_the_flag(make_sim, tmp_path):
    sim = _lost_sim(make_sim)
    out, env = tmp_path / "run", sim_env(sim)
    manifest = write_manifest(tmp_path / "m.yaml", ["a fox", "an owl"])
    code, summary, err = _cli("run", manifest, "--out", out, "--no-resubmit-uncertain", env=env)
    assert code == 1 and summary["counts"] == {"uncertain": 2}
    assert sim.stats()["submitted"] == 2 and summary["possible_duplicates"] == 0
    sim.post("/_sim/config", {"lost_submit_rate": 0})
    code, summary, _ = _cli("resume", out, env=env)  # the stored choice holds
    assert code == 1 and sim.stats()["submitted"] == 2
    code, summary, err = _cli("resume", out, "--resubmit-uncertain", env=env)
    assert code == 0, err
    assert summary["counts"] == {"done": 2} and summary["possible_duplicates"] == 2
    assert sim.stats()["submitted"] == 4


def _settings(**kw) -> RunSettings:
    return RunSettings(**kw)


@pytest.mark.parametrize(
    ("options", "duplicates", "sent", "bound"),
    [
        ({}, 0, True, MAX_LOST_SUBMITS),  # one answer lost so far: sent again automatically
        ({}, 1, False, MAX_LOST_SUBMITS),  # two lost: at the bound, it waits for the flag
        ({"resubmit_uncertain_now": True}, 1, True, 3),  # asked for: once more, past it
        ({"resubmit_uncertain_now": True}, 4, True, 6),
        ({"resubmit_uncertain": False}, 0, False, 2),
        ({"resubmit_uncertain": False, "resubmit_uncertain_now": True}, 0, True, 2),
    ],
)
def test_which_uncertain_jobs_are_sent(options, duplicates, sent, bound):
    settings = _settings(**options)
    assert sends(settings, U, duplicates) is sent
    if sent:
        assert loss_bound(settings, U, duplicates) == bound
    assert sends(settings, P, duplicates)  # a pending job is always sent


def test_the_flag_is_never_stored():
    settings = _settings(resubmit_uncertain_now=True)
    assert "resubmit_uncertain_now" not in settings.stored()
