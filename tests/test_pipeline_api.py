"""Pipelines from Python and in names (CONTRACT §3, §8): batch_runner.run takes a manifest
mapping with `stages:`; `{STAGE.NAME}` in the name template reads a parent's (or an earlier
ancestor's) input, var or meta, and a job's own stage reads its own."""

from __future__ import annotations

import pytest
from conftest import SIM_TOKEN, read_metadata
from pipeline_manifests import I2V, T2I, V2V

import batch_runner
from batch_runner.errors import ManifestError, UsageError

pytestmark = pytest.mark.timeout(120)

PIPELINE = {
    "stages": {
        "stills": {
            "model": T2I,
            "jobs": [
                {"prompt": "A red fox in fresh snow", "meta": {"animal": "fox"}},
                {"prompt": "An owl at dusk", "meta": {"animal": "owl"}},
            ],
        },
        "clips": {
            "model": I2V,
            "jobs": [{"image_url": {"from": "stills"}, "prompt": "{stills.prompt}, slowly"}],
        },
        "longer": {
            "model": V2V,
            "jobs": [{"video_url": {"from": "clips"}, "prompt": "the {stills.animal} walks"}],
        },
    }
}


@pytest.fixture
def api(make_sim, monkeypatch):
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", SIM_TOKEN)
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    return sim


def test_a_stages_mapping_runs_from_python_with_stage_fields_in_names(api, tmp_path):
    out = tmp_path / "run"
    template = "{stills.animal}/{stills.slug}-{index:02d}.{ext}"
    result = batch_runner.run(PIPELINE, out=out, api_base=api.base_url, name_template=template)
    assert result.exit_code == 0
    assert {s: v["done"] for s, v in result.summary["stages"].items()} == {
        "stills": 2,
        "clips": 2,
        "longer": 2,
    }
    names = {line["file_name"]: line for line in read_metadata(out)}
    # a child's name reads its ancestors (two stages up for `longer`); a still its own
    assert {n.rsplit("-", 1)[0] for n in names} == {
        f"{stage}/{folder}/{animal}/{slug}"
        for stage, folder in (("stills", "images"), ("clips", "videos"), ("longer", "videos"))
        for animal, slug in (("fox", "a-red-fox-in-fresh-snow"), ("owl", "an-owl-at-dusk"))
    }
    longer = [line for line in names.values() if line["stage"] == "longer"]
    assert sorted(line["prompt"] for line in longer) == ["the fox walks", "the owl walks"]
    assert api.stats()["submitted"] == 6
    # the same mapping again sends nothing
    again = batch_runner.run(PIPELINE, out=out, api_base=api.base_url, name_template=template)
    assert again.exit_code == 0 and api.stats()["submitted"] == 6
    assert again.summary["not_in_manifest"] == 0  # children derive from the manifest


def test_a_mapping_needs_out_and_its_problems_name_the_stage(api, tmp_path):
    with pytest.raises(UsageError, match="a manifest mapping needs out=RUN_DIR"):
        batch_runner.run(PIPELINE)
    bad = {"stages": {"a": {"model": T2I, "jobs": [{"prompt": "x", "resolution": "bogus"}]}}}
    with pytest.raises(ManifestError) as caught:
        batch_runner.run(bad, out=tmp_path / "run", api_base=api.base_url)
    assert "stage a: model " in str(caught.value) and "resolution" in str(caught.value)
    assert api.stats()["submitted"] == 0
