"""Pipelines, validated up front (CONTRACT §3 "Pipelines"): `stages:` read and linked, each
stage's inputs checked against its model, `{from:}` kinds against the parent's, problems
naming the stage; `validate --json` has `stages` with "up to" counts and estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, sim_env
from pipeline_manifests import I2V, T2I, V2V

pytestmark = pytest.mark.timeout(90)

PIPELINE = f"""\
stages:
  stills:
    model: {T2I}
    defaults: {{resolution: "2K"}}
    jobs:
      - "A red fox in fresh snow"
      - prompt: "An owl at dusk"
        meta: {{animal: owl}}
    sweep:
      - prompt: "A {{animal}} in the rain"
        vars: {{animal: [cat, dog]}}
        sequential_image_generation: auto
        max_images: 3
  clips:
    model: {I2V}
    jobs:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, the camera slowly pulls back"
        duration: "5"
  longer:
    model: {V2V}
    jobs:
      - video_url: {{from: clips, first: true}}
        prompt: "{{clips.prompt}} and keeps going"
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_counts_every_stage_later_ones_up_to_their_parents_outputs(make_sim, tmp_path):
    sim = make_sim("--price", f"{T2I}=0.03", "--price", f"{I2V}=0.1", "--price", f"{V2V}=0.2")
    res = run_cli("validate", write(tmp_path, PIPELINE), "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # stills: 2 single images + 2 jobs of up to 3 images each = up to 8 files
    assert out["jobs"] == 4
    assert out["stages"]["stills"] == {
        "jobs": 4,
        "max_jobs": 4,
        "estimated_cost_usd": pytest.approx(2 * 0.03 + 2 * 3 * 0.03),
    }
    assert out["stages"]["clips"]["jobs"] is None
    assert out["stages"]["clips"]["max_jobs"] == 8
    assert out["stages"]["clips"]["estimated_cost_usd"] == pytest.approx(8 * 5 * 0.1)
    # first: true: one per parent job, whatever it returns
    assert out["stages"]["longer"]["max_jobs"] == 8
    longer = out["stages"]["longer"]["estimated_cost_usd"]
    assert longer is not None and longer > 0
    total = sum(s["estimated_cost_usd"] for s in out["stages"].values())
    assert out["estimated_cost_usd"] == pytest.approx(total)
    human = run_cli("validate", write(tmp_path, PIPELINE), env=sim_env(sim))
    assert human.returncode == 0, human.stderr
    assert "stage clips: up to 8 jobs, up to $4.00" in human.stdout


def test_validate_without_prices_says_unknown_per_stage(tmp_path):
    res = run_cli("validate", write(tmp_path, PIPELINE), "--json", "--offline")
    assert res.returncode == 0, res.stderr
    stages = json.loads(res.stdout)["stages"]
    assert list(stages) == ["stills", "clips", "longer"]
    assert stages["clips"] == {"jobs": None, "max_jobs": 8, "estimated_cost_usd": None}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # a video field fed images: the parent model's kind is checked
        (
            f"  bad:\n    model: {V2V}\n    jobs:\n      - video_url: {{from: stills}}\n"
            "        prompt: x\n",
            f"p.yaml:9: stage bad: model {V2V}: video_url: takes video files, but stage stills "
            "makes image files",
        ),
        (
            f"  bad:\n    model: {I2V}\n    jobs:\n      - image_url: {{from: nowhere}}\n"
            "        prompt: x\n",
            "p.yaml:9: stage bad: image_url: no stage 'nowhere' (earlier stages: stills)",
        ),
        (
            f"  bad:\n    model: {I2V}\n    jobs:\n      - image_url: {{from: bad}}\n"
            "        prompt: x\n",
            "p.yaml:9: stage bad: image_url: a stage cannot take its own outputs",
        ),
        (
            f"  bad:\n    model: {I2V}\n    jobs:\n      - image_url: {{from: stills}}\n"
            "        prompt: x\n        duration: 99\n",
            f"p.yaml:11: stage bad: model {I2V}: duration: 99 is not one of",
        ),
        (
            f"  bad:\n    model: {I2V}\n    jobs:\n      - image_url: {{from: stills}}\n"
            "        prompt: '{stills.colour} fox'\n",
            "p.yaml:9: stage bad: prompt: {stills.colour}: stage stills's jobs have no input, "
            "var or meta 'colour'",
        ),
        (
            f"  bad:\n    model: {I2V}\n    jobs:\n      - prompt: x\n"
            "        image_url: {from: stills}\n"
            "    options: {concurrency: 2}\n",
            "p.yaml:11: stage bad: 'options' is not a stage key",
        ),
    ],
)
def test_stage_problems_name_file_line_stage_model_and_field(tmp_path, body, expected):
    text = f"stages:\n  stills:\n    model: {T2I}\n    jobs:\n      - A fox\n" + body
    # line 6 is the bad stage's name, 9 its first job's fields
    res = run_cli("validate", write(tmp_path, text), "--offline")
    assert res.returncode == 2, res.stdout
    assert expected in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_a_forward_reference_is_refused(tmp_path):
    text = (
        f"stages:\n  clips:\n    model: {I2V}\n    jobs:\n"
        "      - {image_url: {from: stills}, prompt: x}\n"
        f"  stills:\n    model: {T2I}\n    jobs: [A fox]\n"
    )
    res = run_cli("validate", write(tmp_path, text), "--offline")
    assert res.returncode == 2
    assert "p.yaml:5: stage clips: image_url: stage stills comes later" in res.stderr


def test_top_level_jobs_beside_stages_are_refused(tmp_path):
    text = f"jobs: [A fox]\nstages:\n  stills:\n    model: {T2I}\n    jobs: [An owl]\n"
    res = run_cli("validate", write(tmp_path, text), "--offline")
    assert res.returncode == 2
    assert "with stages:, jobs and sweeps go inside a stage" in res.stderr


def test_stages_inherit_the_top_level_defaults(tmp_path):
    text = f"model: {T2I}\ndefaults: {{resolution: 3K}}\nstages:\n  stills:\n    jobs: [A fox]\n"
    res = run_cli("validate", write(tmp_path, text), "--offline", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["stages"]["stills"]["jobs"] == 1
