"""A pipeline run as shards (CONTRACT §7 with §3 Pipelines; README "Shards"): the first stage's
jobs are sharded by key, a child is made and run by the shard that ran its parent (never
sharded again by its own key), and `merge` and `status` over the shards add the stages up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli, sim_env, spawn_cli, status_json

from batch_runner.shards import shard_of

pytestmark = pytest.mark.timeout(120)

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "blackforestlabs/flux-3/image-to-video/draft"
ANIMALS = ["fox", "owl", "cat", "dog", "hare", "lynx", "seal", "wren"]

PIPELINE = f"""\
stages:
  stills:
    model: {T2I}
    sweep:
      - prompt: "A {{animal}} in the snow"
        vars: {{animal: [{", ".join(ANIMALS)}]}}
        sequential_image_generation: auto
        max_images: 2
  clips:
    model: {I2V}
    jobs:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}; the camera pulls back"
"""


def shard_lines(out: Path, k: int) -> list[dict]:
    text = (out / f"shard-{k}-of-2" / "shard-metadata.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_children_run_in_their_parents_shard_and_merge_with_lineage(make_sim, tmp_path):
    sim = make_sim("--latency", "0.02:0.1", "--image-scale", "0.02")
    manifest, out = tmp_path / "p.yaml", tmp_path / "run"
    manifest.write_text(PIPELINE, encoding="utf-8")
    args = ("run", manifest, "--out", out, "--retries", "0", "--no-progress")
    procs = [spawn_cli(*args, "--shard", f"{k}/2", env=sim_env(sim)) for k in range(2)]
    for proc in procs:  # both shards at once, as two machines would
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    assert "first-stage jobs (their later stages run in this shard too)" in err

    stills, clips = {}, {}
    for k in range(2):
        lines = shard_lines(out, k)
        mine = {line["key"] for line in lines if line["stage"] == "stills"}
        assert mine and all(shard_of(key, 2) == k for key in mine)  # sharded by key
        for line in lines:
            if line["stage"] == "clips":  # in its parent's shard, whatever its own key says
                assert line["parent_key"] in mine
                clips.setdefault(line["key"], []).append((k, line))
            else:
                stills[f"shard-{k}-of-2/{line['file_name']}"] = line
    assert len({line["key"] for line in stills.values()}) == len(ANIMALS)
    assert all(len(found) == 1 for found in clips.values())  # no job in two shards
    assert any(shard_of(key, 2) != k for key, [(k, _)] in clips.items())  # not re-sharded
    # every still file has exactly one clip, across both shards
    made_from = sorted(f"shard-{k}-of-2/{c['parent_file']}" for [(k, c)] in clips.values())
    assert made_from == sorted(stills)
    assert sim.stats()["submitted"] == len(ANIMALS) + len(stills)

    res = run_cli("merge", out)
    assert res.returncode == 0, res.stderr
    merged = read_metadata(out)
    assert len(merged) == len(stills) + len(clips)
    by_name = {line["file_name"]: line for line in merged}
    for line in merged:
        if line["stage"] == "clips":  # lineage resolves within the merged data set
            assert by_name[line["parent_file"]]["key"] == line["parent_key"]
    page = (out / "report.html").read_text()
    assert page.count('class="chain" data-stage="stills"') == len(ANIMALS)

    status = status_json(out)
    assert status["stages"]["stills"]["done"] == len(ANIMALS)
    assert status["stages"]["clips"]["done"] == len(stills)
    assert sum(s["jobs"] for s in status["shards"].values()) == len(ANIMALS) + len(stills)

    # run again, one shard: its children are its own, nothing is made or sent twice
    res = run_cli(*args, "--shard", "1/2", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sim.stats()["submitted"] == len(ANIMALS) + len(stills)
