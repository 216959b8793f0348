"""Image, video and audio models end to end on the simulator: each file sniffed, checked and
put in images/, videos/ or audio/; nested output URLs; a kind the model does not make refused;
statuses nobody documents polled on."""

from __future__ import annotations

import io
import json
import time
import wave
from pathlib import Path

from conftest import read_metadata, run_cli, sim_env, spawn_cli, write_manifest
from PIL import Image

from batch_runner.jobs import JobSpec
from batch_runner.outputs.media import HEAD, check, in_memory, sniff
from batch_runner.run.lock import RunLock
from batch_runner.run.runner import RunInput, open_run
from batch_runner.settings import RunSettings

IMAGE = "bytedance/seedream-5/lite/text-to-image"
VIDEO = "alibaba/happyhorse-1.1/text-to-video"
AUDIO = "acestep-ai/ace-step-1.5/text-to-audio"
SPECS = [
    JobSpec(IMAGE, {"prompt": "A calm sea", "resolution": "2K"}),
    JobSpec(VIDEO, {"prompt": "A storm at sea", "duration": 3}),
    JobSpec(AUDIO, {"tags": "calm piano", "duration": 5}),
]


def seed_run(run_dir: Path, specs: list[JobSpec], api_base: str) -> None:
    """The state of a run over several models, as `run MANIFEST` writes it before sending.

    (Manifests naming video and audio models are the catalogue side's work; `resume` then
    runs these jobs through the public command line.)"""
    settings = RunSettings(api_base=api_base, progress=False)
    lock = RunLock(run_dir)
    store = open_run(RunInput(run_dir, settings, None, specs=specs), lock)
    store.close()
    lock.release()


def resume(sim, run_dir: Path, *extra: str):
    res = run_cli("resume", run_dir, "--no-progress", "--json", *extra, env=sim_env(sim))
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_image_video_and_audio_models_land_in_their_folders(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    out = tmp_path / "run"
    seed_run(out, SPECS, sim.base_url)
    res = resume(sim, out)
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout)["counts"] == {"done": 3}
    lines = {line["model"]: line for line in read_metadata(out)}
    expected = {IMAGE: ("image", "images", "png"), VIDEO: ("video", "videos", "mp4")}
    expected[AUDIO] = ("audio", "audio", "wav")
    for model, (kind, folder, ext) in expected.items():
        line = lines[model]
        assert (line["media_type"], line["model_id"]) == (kind, model)
        path = out / line["file_name"]
        assert path.parent == out / folder and path.suffix == f".{ext}"
        data = path.read_bytes()
        assert len(data) == line["bytes"]
        assert sniff(data[:HEAD]) == ext and check(ext, in_memory(data), len(data)) is None
    with Image.open(out / lines[IMAGE]["file_name"]) as img:
        assert img.format == "PNG" and img.text["parameters"].startswith("A calm sea")
    with wave.open(io.BytesIO((out / lines[AUDIO]["file_name"]).read_bytes())) as w:
        assert w.getnframes() > 0 and w.getnchannels() == 1
    assert b"moov" in (out / lines[VIDEO]["file_name"]).read_bytes()
    report = (out / "report.html").read_text()
    assert '<video src="videos/' in report and '<audio src="audio/' in report
    for model in expected:
        assert f'<p class="model">{model}</p>' in report.replace("<wbr>", "")
    # media_type and model_id come back from the state when metadata.jsonl is rebuilt
    (out / "metadata.jsonl").unlink()
    assert resume(sim, out).returncode == 0
    rebuilt = {line["model"]: line for line in read_metadata(out)}
    assert rebuilt == lines


def test_urls_nested_anywhere_under_output(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02", "--output-style", "nested")
    manifest = write_manifest(tmp_path / "n.yaml", ["A nested fox", "A nested owl"])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    names = sorted(line["file_name"] for line in read_metadata(out))
    assert len(names) == 2 and all(n.startswith("images/") and n.endswith(".png") for n in names)


def test_a_kind_the_model_does_not_make_fails_the_download(make_sim, tmp_path):
    """An image model answered with an MP4: refused, retried under the policy (a bad file is
    final), the job failed, no file under any final name and no part file left."""
    sim = make_sim("--latency", "0.05", "--output-style", "video")
    manifest = write_manifest(tmp_path / "w.yaml", ["A fox that came out moving"])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", "--no-progress", env=sim_env(sim))
    assert res.returncode == 1, res.stderr
    (failure,) = json.loads(res.stdout)["failures"]
    assert "a video file (mp4) from a model that makes image" in failure["reason"]
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.parent != out]
    assert leftovers == [] and not (out / "metadata.jsonl").exists()


def test_an_unknown_status_is_polled_on_and_warned_once(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02", "--hostile", "unknown_status")
    manifest = write_manifest(tmp_path / "u.yaml", ["A fox", "An owl", "A heron"])
    out = tmp_path / "run"
    proc = spawn_cli("run", manifest, "--out", out, "--json", "--no-progress", env=sim_env(sim))
    try:
        deadline = time.monotonic() + 30
        while sim.stats()["requests"].get("result", 0) < 9 and time.monotonic() < deadline:
            time.sleep(0.05)  # every job has been told "exploded" a few times
        assert proc.poll() is None  # still polling, nothing failed
        sim.post("/_sim/config", {"hostile": None})
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["counts"] == {"done": 3}
    assert stderr.count("status 'exploded'") == 1, stderr


MODEL_SWEEP = f"""\
model_defaults:
  {VIDEO}: {{duration: 3}}
sweep:
  - model: [{IMAGE}, {VIDEO}]
    prompt: ["A calm sea", "A storm"]
jobs:
  - {{model: {AUDIO}, tags: "calm piano", duration: 5}}
"""


def test_a_manifest_over_three_models_and_its_model_grid(make_sim, tmp_path):
    """Through `run MANIFEST`: a sweep with a model axis, an audio job; the report's grid for
    the sweep has the models as its rows."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    manifest = tmp_path / "models.yaml"
    manifest.write_text(MODEL_SWEEP)
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    lines = read_metadata(out)
    folders = {(ln["model"], ln["file_name"].split("/")[0], ln["media_type"]) for ln in lines}
    assert folders == {
        (IMAGE, "images", "image"),
        (VIDEO, "videos", "video"),
        (AUDIO, "audio", "audio"),
    }
    report = (out / "report.html").read_text()
    start = report.index('<table class="grid"')
    grid = report[start : report.index("</table>", start)]
    assert "varying: model (2), prompt (2)<" in report  # not duration: only the video takes it
    rows = [
        cell.split("</th>")[0].replace("<wbr>", "")
        for cell in grid.split('<th class="row-head" scope="row">')[1:]
    ]
    assert rows == [IMAGE, VIDEO]
    assert grid.count("<video ") == 2 and grid.count("<img ") == 2
