"""A pipeline killed with `kill -9` at chosen points, then resumed (issue 27 "Done when",
CONTRACT §3 "Pipelines", §2 uncertain jobs): every parent file ends with exactly its children,
nothing is submitted twice beyond the uncertain policy, every child is sent its parent's URL,
lineage is in metadata.jsonl.

The kill is placed, not timed: the simulator's `hold_submits` switch keeps chosen submit
answers (the jobs exist at the API, their POSTs are in flight), and the test kills the run only
once the simulator holds the expected POSTs and the state file shows the expected rows; each
test then asserts from the state that the kill landed there."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import conftest
import pytest
from conftest import read_metadata, sim_env, spawn_cli
from pipeline_manifests import CLIPS, I2V, LONGER, T2I, V2V

pytestmark = pytest.mark.timeout(60)


def manifest(tmp_path: Path, prompts: list[str], *, longer: bool = False) -> Path:
    """stills (one image per prompt) → a clip per still [→ a longer clip per clip]."""
    text = f"stages:\n  stills:\n    model: {T2I}\n    jobs:\n"
    text += "".join(f'      - "{p}"\n' for p in prompts)
    text += CLIPS + (LONGER if longer else "")
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def holding_sim(make_sim, *holds: str):
    sim = make_sim("--latency", "0.05:0.15", "--image-scale", "0.02")
    sim.post("/_sim/config", {"hold_submits": list(holds)})
    return sim


def state(out: Path) -> list[dict[str, Any]]:
    """Every job of the state file with its stage, parent and number of request ids."""
    db = sqlite3.connect(f"file:{out / 'state.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT j.key, j.state, l.stage, l.parent_key, l.parent_file, "
            "(SELECT count(*) FROM attempts a WHERE a.job_idx = j.idx), "
            "(SELECT count(*) FROM files f WHERE f.job_idx = j.idx) "
            "FROM jobs j LEFT JOIN lineage l ON l.job_idx = j.idx ORDER BY j.idx"
        ).fetchall()
    finally:
        db.close()
    names = ("key", "state", "stage", "parent_key", "parent_file", "request_ids", "files")
    return [dict(zip(names, row, strict=True)) for row in rows]


def kill_when(proc: subprocess.Popen[str], sim, out: Path, held: int, ready) -> list[dict]:
    """Wait (polling, never a fixed sleep) until the simulator holds `held` submit answers and
    `ready(jobs)` holds for the state file; then kill -9 the run. Returns the state then."""
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never reached: held {sim.stats()}"
        if sim.stats()["held_submits"] == held and (out / "state.db").is_file():
            jobs = state(out)
            if ready(jobs):
                break
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -9
    assert sim.stats()["held_submits"] == held  # nothing moved on: the kill landed here
    return state(out)


def of(jobs: list[dict], stage: str) -> list[dict]:
    return [j for j in jobs if j["stage"] == stage]


def resume(out: Path, sim, *flags: str) -> tuple[int, dict, str]:
    return conftest.run_json("resume", out, "--retries", "0", *flags, env=sim_env(sim))


def check_chain(out: Path, sim, summary: dict, stages: dict[str, int]) -> None:
    """Every job done; every parent file has exactly one child per template; lineage in the
    state and in metadata.jsonl agree; submits are unique bodies plus possible duplicates;
    every child was sent its parent's URL, never a file inline."""
    assert {s: v["done"] for s, v in summary["stages"].items()} == stages
    assert summary["counts"] == {"done": sum(stages.values())}
    jobs = state(out)
    assert len(jobs) == sum(stages.values())
    assert all(j["state"] == "done" and j["files"] == 1 for j in jobs)
    lines = read_metadata(out)
    assert len(lines) == len({line["file_name"] for line in lines}) == len(jobs)
    by_key = {line["key"]: line for line in lines}
    children = Counter((j["parent_key"], j["parent_file"]) for j in jobs if j["parent_key"])
    for job in jobs:
        line = by_key[job["key"]]
        assert (line["stage"], line["parent_key"], line["parent_file"]) == (
            job["stage"],
            job["parent_key"],
            job["parent_file"],
        )
        assert (out / line["file_name"]).is_file()
        if job["stage"] != list(stages)[-1]:  # each file of a parent: exactly one child
            assert children[(job["key"], line["file_name"])] == 1, line["file_name"]
        if job["parent_key"]:
            parent = by_key[job["parent_key"]]
            assert parent["file_name"] == job["parent_file"]
            url = line.get("image_url") or line.get("video_url")
            assert url.startswith(sim.base_url + "/files/"), line
    assert sum(children.values()) == len(jobs) - stages["stills"]
    stats = sim.stats()
    assert stats["unique_bodies"] == len(jobs)
    assert stats["submitted"] == len(jobs) + summary["possible_duplicates"]
    # every child submit (resends too) carried its parent's URL; nothing went inline
    bodies = [job["body"] for job in sim.jobs()]
    sent = [url for b in bodies if (url := b.get("image_url") or b.get("video_url"))]
    assert len(sent) >= len(jobs) - stages["stills"]
    assert all(url.startswith(sim.base_url + "/files/") for url in sent)
    assert stats["input_urls_own"] == len(sent) and stats["input_data_uris"] == 0


def test_kill_while_child_submits_are_in_flight(make_sim, tmp_path):
    """(a) Every child's POST is at the simulator, its answer held: the intents are on disk,
    no request id. Uncertain after the crash: not resent with --no-resubmit-uncertain, each
    sent exactly once more with --resubmit-uncertain."""
    sim = holding_sim(make_sim, I2V)
    out = tmp_path / "run"
    prompts = ["A red fox in fresh snow", "An owl at dusk", "A cat on a roof"]
    proc = spawn_cli(
        "run", manifest(tmp_path, prompts), "--out", out, "--concurrency", "3", "--no-progress",
        env=sim_env(sim),
    )  # fmt: skip
    jobs = kill_when(proc, sim, out, 3, lambda jobs: len(of(jobs, "clips")) == 3)
    assert [j["state"] for j in of(jobs, "stills")] == ["done"] * 3
    clips = of(jobs, "clips")
    assert {(j["state"], j["request_ids"]) for j in clips} == {("submitting", 0)}
    assert sim.stats()["submitted"] == 6  # the three clips exist at the API

    sim.post("/_sim/config", {"hold_submits": []})
    code, summary, err = resume(out, sim, "--no-resubmit-uncertain")
    assert code == 1, err
    assert summary["counts"] == {"done": 3, "uncertain": 3}
    assert "--resubmit-uncertain" in err
    assert sim.stats()["submitted"] == 6  # an uncertain child is not sent again
    assert [j["key"] for j in of(state(out), "clips")] == [j["key"] for j in clips]

    code, summary, err = resume(out, sim, "--resubmit-uncertain")
    assert code == 0, err
    assert summary["possible_duplicates"] == 3  # each held clip sent exactly once more
    check_chain(out, sim, summary, {"stills": 3, "clips": 3})
    assert sim.stats()["held_submits_total"] == 3


def test_kill_after_a_parent_is_done_before_its_child_is_submitted(make_sim, tmp_path):
    """(b) One place: the fox is done and its clip created (in the same commit), but the owl's
    POST holds the only place, so the clip is pending, never sent, when the run dies. Then
    the same `run` command again."""
    sim = holding_sim(make_sim, "(held)")
    out = tmp_path / "run"
    path = manifest(tmp_path, ["A red fox in fresh snow", "An owl at dusk (held)"])
    proc = spawn_cli(
        "run", path, "--out", out, "--concurrency", "1", "--no-progress", env=sim_env(sim)
    )
    jobs = kill_when(proc, sim, out, 1, lambda jobs: len(of(jobs, "clips")) == 1)
    fox, owl = of(jobs, "stills")
    (clip,) = of(jobs, "clips")
    assert (fox["state"], fox["files"], owl["state"], owl["request_ids"]) == (
        "done",
        1,
        "submitting",
        0,
    )
    assert (clip["state"], clip["request_ids"], clip["parent_key"]) == ("pending", 0, fox["key"])
    stats = sim.stats()
    assert stats["submitted"] == 2 and stats["input_urls_own"] == 0  # no clip was sent

    # the same command again (not `resume`): the manifest's children of done parents are
    # made again by key, which must find the fox's clip already there
    sim.post("/_sim/config", {"hold_submits": []})
    code, summary, err = conftest.run_json(
        "run", path, "--out", out, "--retries", "0", env=sim_env(sim)
    )
    assert code == 0, err
    assert summary["possible_duplicates"] == 1  # the owl, whose answer the kill lost
    check_chain(out, sim, summary, {"stills": 2, "clips": 2})
    assert of(state(out), "clips")[0]["key"] == clip["key"]  # the same row, not made again


def test_kill_in_the_middle_of_stage_two_of_three(make_sim, tmp_path):
    """(c) stills → clips → longer: two clips done (their longer clips created and their POSTs
    held), the owl's clip POST held. Resumed, every stage ends with one job per parent file."""
    sim = holding_sim(make_sim, "owl at dusk, the camera", V2V)
    out = tmp_path / "run"
    prompts = ["A red fox in fresh snow", "An owl at dusk", "A cat on a roof"]
    proc = spawn_cli(
        "run", manifest(tmp_path, prompts, longer=True), "--out", out, "--concurrency", "3",
        "--no-progress", env=sim_env(sim),
    )  # fmt: skip
    jobs = kill_when(proc, sim, out, 3, lambda jobs: len(of(jobs, "longer")) == 2)
    assert [j["state"] for j in of(jobs, "stills")] == ["done"] * 3
    clips = {j["parent_key"]: j for j in of(jobs, "clips")}
    owl = of(jobs, "stills")[1]["key"]
    assert (clips[owl]["state"], clips[owl]["request_ids"]) == ("submitting", 0)
    assert [j["state"] for k, j in clips.items() if k != owl] == ["done", "done"]
    longer = of(jobs, "longer")
    assert {(j["state"], j["request_ids"]) for j in longer} == {("submitting", 0)}
    assert {j["parent_key"] for j in longer} == {j["key"] for k, j in clips.items() if k != owl}

    sim.post("/_sim/config", {"hold_submits": []})
    code, summary, err = resume(out, sim)
    assert code == 0, err
    assert summary["possible_duplicates"] == 3  # the three POSTs the kill left unanswered
    check_chain(out, sim, summary, {"stills": 3, "clips": 3, "longer": 3})
