"""Pipelines run end to end against the simulator over sockets (CONTRACT §3, §4): children
made as parents finish, sent the parents' URLs, in the same pool; lineage in metadata and
status; failed parents make none; kill -9 and resume make every child exactly once; a stage
added later makes children of done parents and sends nothing for them again."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import conftest
import pytest
from conftest import read_metadata, run_cli, sim_env, spawn_cli
from pipeline_manifests import CLIPS as CLIPS_5S
from pipeline_manifests import I2V, LONGER, RAIN_SWEEP, T2I

pytestmark = pytest.mark.timeout(180)

STILLS = f"""\
stages:
  stills:
    model: {T2I}
    defaults: {{resolution: "2K"}}
    jobs:
      - prompt: "A red fox in fresh snow"
        meta: {{animal: fox}}
      - "An owl at dusk [sim:fail]"
{RAIN_SWEEP}"""
CLIPS = CLIPS_5S + '        meta: {from_animal: "{stills.animal}"}\n'


def pipeline_sim(make_sim, *args: str):
    return make_sim("--latency", "0.05:0.3", "--image-scale", "0.02", *args)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_json(*args, env) -> tuple[int, dict, str]:
    # --retries 0: a failed generation is not tried again (submitted == unique bodies)
    return conftest.run_json(*args, "--retries", "0", env=env, timeout=150)


def check_lineage(out: Path) -> dict[str, list[dict]]:
    """Every parent file has exactly its children; every file is under its stage's folder."""
    lines = read_metadata(out)
    names = [line["file_name"] for line in lines]
    assert len(names) == len(set(names))
    by_stage: dict[str, list[dict]] = {}
    for line in lines:
        by_stage.setdefault(line["stage"], []).append(line)
        folder = {"image": "images", "video": "videos", "audio": "audio"}[line["media_type"]]
        assert line["file_name"].startswith(f"{line['stage']}/{folder}/")
        assert (out / line["file_name"]).is_file()
    on_disk = sorted(
        p.relative_to(out).as_posix()
        for stage in by_stage
        for p in (out / stage).rglob("*")
        if p.is_file()
    )
    assert on_disk == sorted(names)
    for line in by_stage.get("stills", []):
        assert line["parent_key"] is None and line["parent_file"] is None
    parents = {line["file_name"]: line for line in lines}
    for line in by_stage.get("clips", []):
        parent = parents[line["parent_file"]]
        assert parent["stage"] == "stills" and line["parent_key"] == parent["key"]
    clips_of = {}
    for line in by_stage.get("clips", []):
        clips_of.setdefault(line["parent_file"], []).append(line)
    assert sorted(clips_of) == sorted(line["file_name"] for line in by_stage.get("stills", []))
    assert all(len(v) == 1 for v in clips_of.values())
    return by_stage


def test_children_run_from_their_parents_urls_with_lineage(make_sim, tmp_path):
    sim = pipeline_sim(make_sim)
    out = tmp_path / "run"
    code, summary, err = run_json(
        "run", write(tmp_path, STILLS + CLIPS), "--out", out, "--concurrency", "3", env=sim_env(sim)
    )
    assert code == 1, err  # the owl failed
    # stills: fox (1 file), owl (failed), cat and dog (1 or 2 files each): a clip per file
    assert summary["stages"]["stills"]["counts"] == {"done": 3, "failed": 1}
    by_stage = check_lineage(out)
    n = len(by_stage["stills"])
    assert 3 <= n <= 5
    assert summary["stages"]["clips"]["jobs"] == summary["stages"]["clips"]["done"] == n
    assert summary["stages"]["clips"]["not_created"] == {"parent_failed": 1}
    assert "not created: parent failed" in err
    fox = next(c for c in by_stage["clips"] if "fox" in c["prompt"])
    assert fox["prompt"] == "A red fox in fresh snow, the camera pulls back"
    assert fox["from_animal"] == "fox"
    # sent the parent's URL as the simulator returned it: no upload, nothing inline
    assert fox["image_url"].startswith(sim.base_url + "/files/")
    stats = sim.stats()
    assert stats["submitted"] == stats["unique_bodies"] == 4 + n
    assert stats["max_concurrent"] <= 3
    status = json.loads(run_cli("status", out, "--json").stdout)
    assert status["stages"] == summary["stages"]


def test_three_stages_first_true_takes_each_parents_first_file(make_sim, tmp_path):
    sim = pipeline_sim(make_sim)
    out = tmp_path / "run"
    text = STILLS.replace('      - "An owl at dusk [sim:fail]"\n', "") + CLIPS + LONGER
    code, summary, err = run_json("run", write(tmp_path, text), "--out", out, env=sim_env(sim))
    assert code == 0, err
    by_stage = check_lineage(out)
    n = len(by_stage["stills"])
    assert {s: v["done"] for s, v in summary["stages"].items()} == {
        "stills": 3,
        "clips": n,
        "longer": n,
    }
    clips = {c["file_name"]: c for c in by_stage["clips"]}
    for line in by_stage["longer"]:
        parent = clips[line["parent_file"]]
        assert line["parent_key"] == parent["key"]
        # an ancestor two stages up is readable too
        assert line["prompt"].endswith(" and it goes on")
        assert "{stills.prompt}" not in line["prompt"]
    stats = sim.stats()
    assert stats["submitted"] == stats["unique_bodies"] == 3 + 2 * n
    # exports carry the lineage as metadata.jsonl does (CONTRACT §2 export, §4)
    lineage = {line["file_name"]: line for lines in by_stage.values() for line in lines}
    assert (
        run_cli("export", out, "--format", "jsonl", "--out", tmp_path / "e.jsonl").returncode == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert len(rows) == len(lineage)
    for row in rows:
        want = lineage[row["file_name"]]
        assert (row["stage"], row["parent_key"], row["parent_file"]) == (
            want["stage"],
            want["parent_key"],
            want["parent_file"],
        )
    res = run_cli("export", out, "--format", "parquet", "--out", tmp_path / "e.parquet")
    assert res.returncode == 0, res.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet", columns=["file_name", "stage", "parent_key"])
    assert {r["file_name"]: r["stage"] for r in table.to_pylist()} == {
        name: line["stage"] for name, line in lineage.items()
    }


def test_adding_a_stage_makes_children_of_done_parents_and_resends_nothing(make_sim, tmp_path):
    sim = pipeline_sim(make_sim)
    out = tmp_path / "run"
    manifest = write(tmp_path, STILLS)
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 1, err
    assert sim.stats()["submitted"] == 4
    write(tmp_path, STILLS + CLIPS)
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 1, err  # the owl is still failed
    stats = sim.stats()
    n = len(check_lineage(out)["stills"])
    assert stats["submitted"] == stats["unique_bodies"] == 4 + n  # only the clips are new
    assert summary["stages"]["clips"]["done"] == n
    # --retry-failed on the parent later: it makes its children then (and it fails again)
    code, summary, err = run_json("resume", out, "--retry-failed", env=sim_env(sim))
    assert code == 1, err
    assert sim.stats()["submitted"] == 4 + n + 1
    # running it again sends nothing
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert sim.stats()["submitted"] == 4 + n + 1


def test_kill_9_and_resume_make_every_child_exactly_once(make_sim, tmp_path):
    sim = make_sim("--latency", "0.1:0.4", "--submit-delay", "0.05", "--image-scale", "0.02")
    jobs = "\n".join(f"      - prompt: still number {i}" for i in range(12))
    text = f"stages:\n  stills:\n    model: {T2I}\n    jobs:\n{jobs}\n" + CLIPS.replace(
        'meta: {from_animal: "{stills.animal}"}', "meta: {n: 1}"
    )
    manifest = write(tmp_path, text)
    out = tmp_path / "run"
    env = sim_env(sim)
    rng = random.Random(7)
    for _ in range(3):
        proc = spawn_cli(
            "run", manifest, "--out", out, "--concurrency", "6", "--no-progress", env=env
        )
        deadline = time.monotonic() + 30
        start = sim.stats()["submitted"]
        while sim.stats()["submitted"] < start + 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.1, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    code, summary, err = run_json("resume", out, "--resubmit-uncertain", env=env)
    assert code == 0, err
    assert summary["stages"]["stills"]["done"] == 12
    assert summary["stages"]["clips"]["done"] == 12
    by_stage = check_lineage(out)
    assert len(by_stage["clips"]) == 12
    stats = sim.stats()
    assert stats["unique_bodies"] == 24
    assert stats["submitted"] - stats["unique_bodies"] <= summary["possible_duplicates"]


def test_max_cost_covers_the_later_stages(make_sim, tmp_path):
    sim = pipeline_sim(make_sim, "--price", f"{T2I}=0.01", "--price", f"{I2V}=0.1")
    out = tmp_path / "run"
    text = STILLS.replace('      - "An owl at dusk [sim:fail]"\n', "") + CLIPS
    # stills: at most 1 + 2*2 images = $0.05; a clip is 5 s * $0.1 = $0.5: two fit in $1.10
    code, summary, err = run_json(
        "run", write(tmp_path, text), "--out", out, "--max-cost", "1.10", env=sim_env(sim)
    )
    assert code == 1, err
    assert summary["stages"]["stills"]["done"] == 3
    assert summary["stages"]["clips"]["done"] == 2
    assert summary["stages"]["clips"]["counts"]["pending"] >= 1
    assert sim.stats()["charged_usd"] <= 1.10 + 1e-9


def test_a_list_media_field_takes_the_parents_file_as_a_one_item_list(make_sim, tmp_path):
    """`image_urls: {from: stills}` on an edit model whose field is a list of images: valid
    up front, and each child is sent `[parent URL]` (the simulator's own URL, not inline)."""
    sim = make_sim("--image-scale", "0.02")
    manifest = tmp_path / "edit.yaml"
    manifest.write_text(
        f"""\
stages:
  stills:
    model: {T2I}
    jobs: ["A red fox in fresh snow", "An owl at dusk"]
  edits:
    model: google/nano-banana-2-lite/edit
    jobs:
      - image_urls: {{from: stills}}
        prompt: "{{stills.prompt}}, at night"
""",
        encoding="utf-8",
    )
    checked = run_cli("validate", manifest, env=sim_env(sim))
    assert checked.returncode == 0, checked.stderr
    assert "stage edits: up to" in checked.stdout
    code, summary, err = run_json("run", manifest, "--out", tmp_path / "run", env=sim_env(sim))
    assert code == 0, err
    assert summary["stages"]["edits"]["done"] == 2
    stats = sim.stats()
    assert stats["input_urls_own"] == 2 and stats["input_data_uris"] == 0
    query = "SELECT inputs FROM jobs JOIN lineage ON job_idx = idx WHERE stage = 'edits'"
    with sqlite3.connect(tmp_path / "run" / "state.db") as db:
        sent = [json.loads(inputs)["image_urls"] for (inputs,) in db.execute(query)]
    assert len(sent) == 2
    assert all(len(urls) == 1 and urls[0].startswith(sim.base_url) for urls in sent)


def test_resume_makes_a_done_parents_missing_children(make_sim, tmp_path):
    """A done parent's children are made in the commit that marks it done; should a state
    ever lack them (here deleted by hand), `resume` (no manifest) makes them again, by key."""
    sim = make_sim("--image-scale", "0.02")
    manifest = write(
        tmp_path, f"stages:\n  stills:\n    model: {T2I}\n" + '    jobs: ["A fox"]\n' + CLIPS_5S
    )
    out = tmp_path / "run"
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    query = "SELECT idx, key FROM jobs JOIN lineage ON job_idx = idx WHERE stage = 'clips'"
    with sqlite3.connect(out / "state.db") as db:
        [(idx, key)] = db.execute(query).fetchall()
        for table, column in (
            ("files", "job_idx"),
            ("attempts", "job_idx"),
            ("lineage", "job_idx"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (idx,))
        db.execute("DELETE FROM jobs WHERE idx = ?", (idx,))
    code, summary, err = run_json("resume", out, env=sim_env(sim))
    assert code == 0, err
    assert summary["stages"]["clips"]["done"] == 1
    with sqlite3.connect(out / "state.db") as db:
        assert [k for _, k in db.execute(query)] == [key]  # the same child, by key
