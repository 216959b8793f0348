"""A manifest becomes images on disk: whole runs via the console script against the simulator."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import SIM_TOKEN, read_metadata, run_cli, sim_env, spawn_cli, write_manifest
from fastretry import run_fast
from PIL import Image

PROMPTS = [f"A watercolour of lighthouse number {i}" for i in range(8)]


def test_whole_run_produces_valid_images_and_metadata(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05:0.2", "--image-scale", "0.05")
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS, resolution="2048x2048 (1:1)")
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["jobs"] == 8 and summary["counts"] == {"done": 8} and summary["files"] == 8

    lines = read_metadata(out)
    assert len(lines) == 8
    assert sorted(line["prompt"] for line in lines) == sorted(PROMPTS)
    for line in lines:
        path = out / line["file_name"]
        assert path.parent == out / "images"
        assert path.stat().st_size == line["bytes"]
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size == (102, 102)
        assert line["request_id"] and line["model"] == "bytedance/seedream-5/lite/text-to-image"
    assert not list((out / "images").glob("*.part"))

    status = run_cli("status", out, "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["counts"] == {"done": 8}
    assert json.loads(status.stdout)["files"] == 8
    assert (out / "report.html").is_file()
    assert (out / "manifest.yaml").read_text() == manifest.read_text()
    assert sim.stats()["submitted"] == 8


@pytest.mark.parametrize(("choice", "loop"), [("", "uvloop"), ("asyncio", "asyncio")])
def test_runs_on_uvloop_or_the_standard_loop(make_sim, tmp_path, choice, loop):
    """uvloop by default on Linux; BATCH_RUNNER_LOOP=asyncio keeps the standard loop."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "a.yaml", [f"Event loop probe {i}" for i in range(4)])
    out = tmp_path / "run"
    env = sim_env(sim, BATCH_RUNNER_LOOP=choice)
    res = run_cli("run", manifest, "--out", out, "--json", "--debug", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"done": 4}
    assert f"debug: event loop: {loop}" in res.stderr
    assert len(read_metadata(out)) == 4 and sim.stats()["submitted"] == 4


def test_concurrency_bounds_jobs_in_flight(make_sim, tmp_path):
    sim = make_sim("--latency", "0.2:0.3", "--image-scale", "0.02")
    prompts = [f"Concurrency probe {i}" for i in range(30)]
    manifest = write_manifest(tmp_path / "c.yaml", prompts)
    res = run_cli(
        "run",
        manifest,
        "--out",
        tmp_path / "run",
        "--concurrency",
        "3",
        "--no-progress",
        env=sim_env(sim),
    )
    assert res.returncode == 0, res.stderr
    stats = sim.stats()
    assert stats["submitted"] == 30
    assert stats["max_concurrent"] == 3


def test_downloads_run_beside_the_next_submit_and_stay_bounded(make_sim, tmp_path):
    # slow storage: each file takes 0.3 s to answer while generation is instant
    sim = make_sim("--file-delay", "0.3", "--image-scale", "0.02")
    prompts = [f"Slow storage probe {i}" for i in range(6)]
    manifest = write_manifest(tmp_path / "s.yaml", prompts)
    out = tmp_path / "run"
    res = run_cli(
        "run", manifest, "--out", out, "--concurrency", "1", "--no-progress", env=sim_env(sim)
    )
    assert res.returncode == 0, res.stderr
    stats = sim.stats()
    assert stats["submitted"] == 6 and stats["max_concurrent"] == 1
    # a finished job's download no longer holds its place: the next submit went out meanwhile
    assert stats["submits_during_files"] >= 1
    assert stats["max_files_serving"] == 1  # and at most --concurrency jobs download at once
    assert len(read_metadata(out)) == 6
    assert len(list((out / "images").iterdir())) == 6


def test_stopped_run_resumes_without_resubmitting(make_sim, tmp_path):
    sim = make_sim("--latency", "0.3:0.6", "--image-scale", "0.02")
    prompts = [f"Resume probe {i}" for i in range(24)]
    manifest = write_manifest(tmp_path / "r.yaml", prompts)
    out = tmp_path / "run"
    proc = spawn_cli(
        "run", manifest, "--out", out, "--concurrency", "4", "--no-progress", env=sim_env(sim)
    )
    deadline = time.monotonic() + 30
    while sim.stats()["submitted"] < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert sim.stats()["submitted"] < 24

    res = run_cli("resume", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"done": 24}
    assert sim.stats()["submitted"] == 24  # nothing submitted twice
    names = [line["file_name"] for line in read_metadata(out)]
    assert len(names) == len(set(names)) == 24
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(Path(n).name for n in names)


def test_image_vs_images_and_jpeg(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.05", "--seed", "3")
    manifest = tmp_path / "o.jsonl"
    manifest.write_text(
        '{"prompt": "single jpeg", "output_format": "jpeg", "resolution": "2K"}\n'
        '{"prompt": "a set", "sequential_image_generation": "auto", "max_images": 3}\n'
    )
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    lines = read_metadata(out)
    by_prompt: dict[str, list[dict]] = {}
    for line in lines:
        by_prompt.setdefault(line["prompt"], []).append(line)
    (jpeg,) = by_prompt["single jpeg"]
    with Image.open(out / jpeg["file_name"]) as img:
        assert img.format == "JPEG"
    assert jpeg["file_name"].endswith(".jpg")
    assert 1 <= len(by_prompt["a set"]) <= 3
    if len(by_prompt["a set"]) > 1:
        assert all("-" in Path(x["file_name"]).stem for x in by_prompt["a set"])
    assert json.loads(res.stdout)["files"] == len(lines)


def test_http_200_error_bodies_are_retried(make_sim, tmp_path):
    sim = make_sim(
        "--latency", "0.05", "--image-scale", "0.02", "--error-rate", "0.3", "--seed", "7"
    )
    manifest = write_manifest(tmp_path / "e.yaml", [f"error probe {i}" for i in range(12)])
    res = run_fast("run", manifest, "--out", tmp_path / "run", "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    stats = sim.stats()
    assert stats["faults"].get("error_200", 0) > 0
    assert json.loads(res.stdout)["counts"] == {"done": 12}


def test_missing_token_is_a_usage_error(sim, tmp_path):
    manifest = write_manifest(tmp_path / "t.yaml", ["a fox"])
    env = sim_env(sim)
    del env["RUNCOMFY_API_TOKEN"]
    res = run_cli("run", manifest, "--out", tmp_path / "run", env=env)
    assert res.returncode == 2
    assert "RUNCOMFY_API_TOKEN" in res.stderr and "Traceback" not in res.stderr
    assert sim.stats()["requests"].get("submit", 0) == 0


def test_wrong_token_stops_with_exit_3(sim, tmp_path):
    manifest = write_manifest(tmp_path / "t.yaml", ["a fox", "an owl"])
    env = sim_env(sim, RUNCOMFY_API_TOKEN="not-the-token")
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--json", env=env)
    assert res.returncode == 3, res.stderr
    assert "token" in res.stderr.lower() and "not-the-token" not in res.stderr + res.stdout
    assert sim.stats()["submitted"] == 0
    assert json.loads(res.stdout)["counts"] == {"pending": 2}


def test_token_file(sim, tmp_path):
    token = tmp_path / "token"
    token.write_text(SIM_TOKEN + "\n")
    token.chmod(0o644)
    manifest = write_manifest(tmp_path / "t.yaml", ["a fox"])
    env = sim_env(sim)
    del env["RUNCOMFY_API_TOKEN"]
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--token-file", token, env=env)
    assert res.returncode == 0, res.stderr
    assert "readable by other users" in res.stderr
