"""A pipeline's money in `run` (CONTRACT §3, §6): every stage's estimate printed before the
first submit, later stages "up to" their parents' most outputs, and the balance check over the
whole chain (the smaller of it and --max-cost)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, sim_env
from pipeline_manifests import CLIPS, I2V, RAIN_SWEEP, T2I

pytestmark = pytest.mark.timeout(120)

# stills: 1 + 2 + 2 images at most ($0.01 each); a clip per image, 5 s at $0.1/s
PIPELINE = f"""\
stages:
  stills:
    model: {T2I}
    jobs: ["A red fox in fresh snow"]
{RAIN_SWEEP}{CLIPS}"""


def run(tmp_path, sim, *args: str):
    manifest = tmp_path / "p.yaml"
    manifest.write_text(PIPELINE, encoding="utf-8")
    res = run_cli(
        "run", manifest, "--out", tmp_path / "run", "--no-progress", "--json", *args,
        env=sim_env(sim),
    )  # fmt: skip
    assert "Traceback" not in res.stderr, res.stderr
    return res


def prices(make_sim, *args: str):
    return make_sim(
        "--latency", "0.05", "--image-scale", "0.02",
        "--price", f"{T2I}=0.01", "--price", f"{I2V}=0.1", *args,
    )  # fmt: skip


def test_run_prints_every_stage_later_ones_up_to(make_sim, tmp_path):
    sim = prices(make_sim)
    res = run(tmp_path, sim)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert "  stage stills: 3 jobs to send, $0.05" in lines
    assert "  stage clips: up to 5 jobs, up to $2.50" in lines
    assert "whole chain: up to $2.55" in lines
    # the estimate comes before anything is sent, and holds: what was spent is within it
    summary = json.loads(res.stdout)
    assert summary["cost"]["spent_usd"] <= 2.55


def test_the_balance_check_covers_the_whole_chain(make_sim, tmp_path):
    sim = prices(make_sim, "--balance", "1.0")  # the stills fit, the chain does not
    res = run(tmp_path, sim)
    assert res.returncode == 3, res.stderr
    assert "balance $1.00 is below the estimated cost up to $2.55 of the whole pipeline" in (
        res.stderr
    )
    assert sim.stats()["submitted"] == 0
    # under a budget the balance covers, it runs (the budget holds the later stages back)
    res = run(tmp_path, sim, "--max-cost", "0.9")
    assert res.returncode == 1, res.stderr
    assert sim.stats()["charged_usd"] <= 0.9
