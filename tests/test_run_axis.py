"""`{run: DIR}` (CONTRACT §3 Pipelines): another run directory's finished outputs as an axis, in
a plain manifest or inside `stages:`. One job per output file of the field's kind, sent its URL
as the API returned it (refreshed from the other run's /result once expired), lineage in
metadata, counted exactly before anything is sent; the other run's state file is never
written; a re-run submits nothing; a DIR that is no run directory is a FILE:LINE problem."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import conftest
import pytest
from conftest import read_metadata, sim_env
from pipeline_manifests import urls_of, wait_until_dead

from batch_runner.shards import shard_of

pytestmark = pytest.mark.timeout(120)

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "blackforestlabs/flux-3/image-to-video/draft"

STILLS = f"""\
model: {T2I}
jobs:
  - A red fox in fresh snow
  - An owl at dusk
  - A cat on a roof
"""
ANIMATE = f"""\
model: {I2V}
jobs:
  - image_url: {{run: stills}}
    prompt: "the camera pulls back"
"""
STAGED = f"""\
stages:
  clips:
    model: {I2V}
    jobs:
      - image_url: {{run: stills, first: true}}
        prompt: "the camera turns"
"""


def run_json(*args, env) -> tuple[int, dict, str]:
    return conftest.run_json(*args, "--retries", "0", env=env)


def validate_json(manifest: Path, env) -> tuple[int, dict, str]:
    res = conftest.run_cli("validate", manifest, "--json", env=env)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def stills(sim, tmp_path: Path) -> Path:
    """A plain run of three stills in tmp_path/stills."""
    manifest, out = tmp_path / "stills.yaml", tmp_path / "stills"
    manifest.write_text(STILLS, encoding="utf-8")
    code, _, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    return out


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plain_manifest_animates_another_runs_stills_by_url(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    parent = stills(sim, tmp_path)
    before, state = sim.stats(), digest(parent / "state.db")
    manifest, out = write(tmp_path, "animate.yaml", ANIMATE), tmp_path / "clips"
    code, checked, err = validate_json(manifest, sim_env(sim))
    assert code == 0 and checked["jobs"] == 3, err  # known now: not "up to"
    assert checked["stages"]["stills"] == {"jobs": 3, "max_jobs": 3, "estimated_cost_usd": 2.358}
    assert checked["estimated_cost_usd"] == 2.358
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0 and summary["counts"] == {"done": 3}, err
    stats = sim.stats()
    assert stats["submitted"] - before["submitted"] == 3
    assert stats["input_urls_own"] - before["input_urls_own"] == 3
    assert stats["input_data_uris"] == 0
    lines = read_metadata(out)
    with sqlite3.connect(parent / "state.db") as db:
        urls = dict(db.execute("SELECT file_name, url FROM files"))
        keys = {key for (key,) in db.execute("SELECT key FROM jobs")}
    assert sorted(line["parent_file"] for line in lines) == sorted(urls)
    for line in lines:  # flat, as any plain run; lineage names the other run
        assert line["file_name"].startswith("videos/") and line["stage"] == "stills"
        assert line["parent_key"] in keys and line["image_url"] == urls[line["parent_file"]]
    assert digest(parent / "state.db") == state  # the other run is never written
    # run again: nothing new is made or sent
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0 and summary["jobs"] == 3 and sim.stats()["submitted"] == stats["submitted"]
    # the clips are videos: an image field finds nothing to take in that run
    again = write(tmp_path, "again.yaml", ANIMATE.replace("run: stills", "run: clips"))
    code, _, err = validate_json(again, sim_env(sim))
    assert code == 2
    assert f"{again}:3: image_url: {{run: {out}}}: no finished image files (only video" in err


def test_a_stage_takes_another_runs_files_and_expired_urls_are_refreshed(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--url-ttl", "1", "--image-scale", "0.02")
    parent = stills(sim, tmp_path)
    urls = urls_of(parent / "state.db")
    wait_until_dead(urls)
    before, state = sim.stats(), digest(parent / "state.db")
    manifest, out = write(tmp_path, "p.yaml", STAGED), tmp_path / "run"
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0 and summary["stages"]["clips"]["done"] == 3, err
    assert summary["retries"] == {"input_url_refreshed": 3}
    stats = sim.stats()
    assert stats["submitted"] - before["submitted"] == 3
    assert stats["input_urls_own"] - before["input_urls_own"] == 3
    assert stats["input_data_uris"] == 0
    for line in read_metadata(out):  # sent the fresh URL, filed under the stage
        assert line["stage"] == "clips" and line["file_name"].startswith("clips/videos/")
        assert line["image_url"] not in urls and line["image_url"].startswith(sim.base_url)
    assert digest(parent / "state.db") == state


def test_a_run_field_that_names_no_run_directory_is_a_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    for where, why in (("nowhere", "no such directory"), ("empty", "no state.db in it")):
        text = ANIMATE.replace("run: stills", f"run: {where}")
        manifest = write(tmp_path, "m.yaml", text)
        for code, _, err in (
            validate_json(manifest, None),
            run_json("run", manifest, "--out", tmp_path / "out", env=None),
        ):
            want = f"{manifest}:3: image_url: {{run: {tmp_path / where}}}: not a run directory"
            assert code == 2 and f"{want} ({why})" in err, err
            assert "stage" not in err  # a plain manifest has none
    assert not (tmp_path / "out").exists()


def test_shards_split_another_runs_files_by_parent_and_merge_keeps_their_parent_file(
    make_sim, tmp_path
):
    sim = make_sim("--latency", "0.02", "--image-scale", "0.02")
    parent = stills(sim, tmp_path)
    with sqlite3.connect(parent / "state.db") as db:
        files = dict(db.execute("SELECT file_name, key FROM files JOIN jobs ON idx = job_idx"))
    before = sim.stats()["submitted"]
    manifest, out = write(tmp_path, "animate.yaml", ANIMATE), tmp_path / "sharded"
    for k in range(2):
        code, _, err = run_json(
            "run", manifest, "--out", out, "--shard", f"{k}/2", env=sim_env(sim)
        )
        assert code == 0, err
        text = (out / f"shard-{k}-of-2" / "shard-metadata.jsonl").read_text()
        for line in map(json.loads, text.splitlines()):  # made by its parent's shard
            assert shard_of(line["parent_key"], 2) == k
    assert {shard_of(key, 2) for key in files.values()} == {0, 1}  # both shards had parents
    assert sim.stats()["submitted"] - before == 3  # each file's job made once, in one shard
    assert conftest.run_cli("merge", out).returncode == 0
    lines = read_metadata(out)
    assert sorted(line["parent_file"] for line in lines) == sorted(files)  # not shard-prefixed
    assert all(line["file_name"].startswith("shard-") for line in lines)


MIXED_STAGE = f"""\
stages:
  stills:
    model: {T2I}
    jobs: [A red fox in fresh snow]
  morph:
    model: blackforestlabs/flux-3/first-last-frame-to-video/draft
    jobs:
      - start_image_url: {{run: stills}}
        end_image_url: {{from: stills}}
        prompt: the fox turns
"""


def test_run_fields_refused_where_the_children_would_be_undefined(tmp_path):
    # {run:} and {from:} in one stage: its chain starts in the other run
    manifest = write(tmp_path, "p.yaml", MIXED_STAGE)
    code, _, err = validate_json(manifest, None)
    assert code == 2, err
    assert (
        f"{manifest}:9: stage morph: end_image_url: {{from: stills}} and {{run:}} "
        "(line 8: start_image_url) in one stage" in err
    )
    # two {run:} directories: the jobs take one
    other = ANIMATE + "  - image_url: {run: clips}\n    prompt: another\n"
    manifest = write(tmp_path, "two.yaml", other)
    code, _, err = validate_json(manifest, None)
    assert code == 2, err
    want = f"{manifest}:5: image_url: the jobs take one {{run:}} field, the same in each (line 3:"
    assert want in err
    # a plain job next to {run:} jobs would be made a child of every file: refused
    plain = ANIMATE + "  - image_url: https://example.com/a.png\n    prompt: a plain job\n"
    manifest = write(tmp_path, "mix.yaml", plain)
    code, _, err = validate_json(manifest, None)
    assert code == 2, err
    assert f"{manifest}:5: no {{run:}} field, but the entry at line 3 has one" in err
    # a run that would take its own outputs
    manifest, out = write(tmp_path, "own.yaml", ANIMATE), tmp_path / "stills"
    code, _, err = run_json("run", manifest, "--out", out, env=None)
    assert code == 2, err
    assert f"{manifest}:3: image_url: {{run: {out}}}: this is the run's own directory" in err
    assert not out.exists()
