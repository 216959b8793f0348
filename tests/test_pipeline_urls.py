"""A child's parent URL that died (CONTRACT §3 Pipelines): refreshed from the parent's /result
when the API refuses it (422001 naming the field), never sent again once known dead; the
parent's local file sent inline only when the parent's request is gone (404001), within
--max-inline-mb, else the child fails saying why. The children are made by adding a stage
after the parents' URLs have died, so every child starts with a dead URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import conftest
import pytest
from conftest import read_metadata, sim_env
from pipeline_manifests import I2V, T2I, wait_until_dead

pytestmark = pytest.mark.timeout(120)

STILLS = f"""\
stages:
  stills:
    model: {T2I}
    jobs:
      - A red fox in fresh snow
      - An owl at dusk
      - A cat on a roof
"""
CLIPS = f"""\
  clips:
    model: {I2V}
    jobs:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, the camera pulls back"
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, the camera turns"
"""


def run_json(*args, env) -> tuple[int, dict, str]:
    return conftest.run_json(*args, "--retries", "0", "--concurrency", "1", env=env)


def parents_run_then_their_urls_die(sim, tmp_path: Path) -> tuple[Path, Path]:
    """Run the stills alone, then wait until every URL they were given is dead."""
    manifest, out = tmp_path / "p.yaml", tmp_path / "run"
    manifest.write_text(STILLS, encoding="utf-8")
    code, _, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    with sqlite3.connect(out / "state.db") as db:
        urls = [url for (url,) in db.execute("SELECT url FROM files")]
    assert len(urls) == 3 and all(u.startswith(sim.base_url) for u in urls)
    wait_until_dead(urls)
    manifest.write_text(STILLS + CLIPS, encoding="utf-8")
    return manifest, out


def test_dead_parent_urls_are_refreshed_and_never_sent_twice(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--url-ttl", "1", "--image-scale", "0.02")
    manifest, out = parents_run_then_their_urls_die(sim, tmp_path)
    before = sim.stats()
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    assert summary["stages"]["clips"]["done"] == 6
    stats = sim.stats()
    assert stats["submitted"] - before["submitted"] == 6
    assert stats["input_urls_own"] == 6 and stats["input_data_uris"] == 0
    # one refused submit per parent file: its second child got the fresh URL before sending
    refused = stats["requests"]["submit"] - before["requests"]["submit"] - 6
    assert refused == 3
    clips = [line for line in read_metadata(out) if line["stage"] == "clips"]
    with sqlite3.connect(out / "state.db") as db:
        fresh = {name: url for name, url in db.execute("SELECT file_name, url FROM files")}
    for clip in clips:  # what was sent is recorded, and the parent keeps its fresh URL
        assert clip["image_url"] == fresh[clip["parent_file"]]
    # a resume sends nothing again
    code, summary, err = run_json("resume", out, env=sim_env(sim))
    assert code == 0 and sim.stats()["submitted"] == stats["submitted"], err


def test_a_forgotten_parent_request_sends_the_parents_file_inline(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--request-ttl", "0.5", "--image-scale", "0.02")
    manifest, out = parents_run_then_their_urls_die(sim, tmp_path)
    before = sim.stats()
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    stats = sim.stats()
    assert stats["submitted"] - before["submitted"] == 6
    assert stats["input_data_uris"] == 6 and stats["input_urls_own"] == 0
    assert stats["faults"]["request_expired"] >= 3
    for clip in (line for line in read_metadata(out) if line["stage"] == "clips"):
        # recorded by its local path (the parent's file), never as the data URI
        assert clip["image_url"] == str((out / clip["parent_file"]).resolve())


def test_a_parent_file_over_max_inline_fails_the_child_saying_why(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--request-ttl", "0.5", "--image-scale", "0.02")
    manifest, out = parents_run_then_their_urls_die(sim, tmp_path)
    before = sim.stats()["submitted"]
    args = ("run", manifest, "--out", out, "--max-inline-mb", "0.000001")
    code, summary, err = run_json(*args, env=sim_env(sim))
    assert code == 1, err
    assert summary["stages"]["clips"]["counts"] == {"failed": 6}
    assert sim.stats()["submitted"] == before
    reasons = {f["reason"] for f in summary["failures"]}
    assert len(reasons) == 3  # one per parent file
    for reason in reasons:
        assert reason.startswith("image_url: the parent's request is gone (404001)")
        assert "--max-inline-mb" in reason
