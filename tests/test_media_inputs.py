"""Media inputs (CONTRACT §1, §3): local files sent inline, data URIs, URLs, limits checked
before anything is sent, folder sweeps, keys by content, resume with changed inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli, sim_env
from mediafiles import bmff
from PIL import Image

from batch_runner.manifest.load import load_jobs
from batch_runner.manifest.media import Limits
from batch_runner.manifest.media_jobs import MediaCheck
from batch_runner.store.state import StateStore

I2V = "alibaba/happyhorse-1.1/image-to-video"  # image_url: image_uri, no validations
EDIT = "bytedance/seedream-5.0-pro/image-to-image"  # image: image_uris with all five rules
V2V = "runwayml/runway-aleph-2/video-to-video"  # video_url: video_uri, file_size_mb< 16
INPAINT = "acestep-ai/ace-step/audio-inpaint"  # audio: audio_uri


def picture(path: Path, w: int, h: int, color=(200, 90, 40), pad: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), color).save(path)
    if pad:  # bytes after the PNG's end: a big file whose header still reads
        with open(path, "ab") as fh:
            fh.write(b"\0" * pad)
    return path


def stills(folder: Path, n: int = 3) -> list[Path]:
    return [picture(folder / f"s{i}.png", 32 + i, 24, (i * 60, 80, 120)) for i in range(n)]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sim_body(sim, index: int = 0) -> dict:
    return sim.jobs()[index]["body"]


# ---- sent inline, passed through -------------------------------------------------------------


def test_local_image_goes_inline_and_is_recorded_by_path_and_hash(sim, tmp_path):
    pic = picture(tmp_path / "pics" / "cat.png", 40, 30)
    manifest = write(
        tmp_path / "m.yaml",
        f"model: {I2V}\njobs:\n  - {{prompt: walk, image_url: pics/cat.png}}\n",
    )
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    body = sim_body(sim)
    prefix = "data:image/png;base64,"
    assert body["image_url"].startswith(prefix)
    assert base64.b64decode(body["image_url"][len(prefix) :]) == pic.read_bytes()
    digest = hashlib.sha256(pic.read_bytes()).hexdigest()
    (line,) = read_metadata(out)
    assert line["image_url"] == str(pic)
    assert line["input_files"] == [
        {
            "field": "image_url",
            "local_file": str(pic),
            "sha256": digest,
            "bytes": pic.stat().st_size,
            "media_type": "image/png",
        }
    ]
    # the data is in neither the state nor the metadata
    assert b"base64" not in (out / "state.db").read_bytes()
    assert "base64" not in (out / "metadata.jsonl").read_text()
    # the gallery shows the input beside the output
    assert f'<div class="inputs">in: <a href="{pic.as_uri()}"' in (out / "report.html").read_text()


def test_https_url_and_data_uri_are_sent_as_written(sim, tmp_path):
    pic = picture(tmp_path / "p.png", 20, 20)
    data = "data:image/png;base64," + base64.b64encode(pic.read_bytes()).decode()
    url = "https://example.com/pictures/dog.png"
    manifest = write(
        tmp_path / "m.yaml",
        f"model: {I2V}\njobs:\n  - {{prompt: a, image_url: '{url}'}}\n"
        f"  - {{prompt: b, image_url: '{data}'}}\n",
    )
    res = run_cli("run", manifest, "--out", tmp_path / "run", "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    bodies = sorted((j["body"] for j in sim.jobs()), key=lambda b: b["prompt"])
    assert [b["image_url"] for b in bodies] == [url, data]


# ---- refused before anything is sent ---------------------------------------------------------


def test_too_large_file_is_refused_with_the_limit_and_nothing_sent(sim, tmp_path):
    picture(tmp_path / "big.png", 20, 20, pad=300_000)
    manifest = write(
        tmp_path / "m.yaml", f"model: {I2V}\njobs:\n  - {{prompt: a, image_url: big.png}}\n"
    )
    res = run_cli(
        "run", manifest, "--out", tmp_path / "run", "--max-inline-mb", "0.25", env=sim_env(sim)
    )
    assert res.returncode == 2
    assert "m.yaml:3" in res.stderr and "0.25 MB limit" in res.stderr
    assert "--max-inline-mb" in res.stderr and "https:// URL" in res.stderr
    assert sim.stats()["submitted"] == 0
    # the default limit (8 MB) lets it through
    assert run_cli("validate", manifest).returncode == 0


@pytest.mark.parametrize(
    ("size", "rule"),
    [
        ((10, 20), "width_pixels> 14"),
        ((20, 10), "height_pixels> 14"),
        ((20, 400), "width/height> 0.0625"),  # 1:20
        ((400, 20), "width/height< 16"),  # 20:1
    ],
)
def test_each_image_validation_rule(tmp_path, size, rule):
    picture(tmp_path / "p.png", *size)
    picture(tmp_path / "ok.png", 20, 20)
    manifest = write(
        tmp_path / "m.yaml", f"model: {EDIT}\njobs:\n  - prompt: a\n    image: [ok.png, p.png]\n"
    )
    res = run_cli("validate", manifest)
    assert res.returncode == 2
    assert (
        f"m.yaml:4: model {EDIT}: image.1: p.png: fails the model's validation {rule}" in res.stderr
    )
    assert "image.0" not in res.stderr


def test_file_size_rule_and_data_uris_are_checked_too(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * (17 * 1024 * 1024))
    tiny = picture(tmp_path / "tiny.png", 10, 10)
    data = "data:image/png;base64," + base64.b64encode(tiny.read_bytes()).decode()
    manifest = write(
        tmp_path / "m.yaml",
        f"model: {V2V}\njobs:\n  - {{prompt: a, video_url: clip.mp4}}\n",
    )
    res = run_cli("validate", manifest, "--max-inline-mb", "20")
    assert res.returncode == 2
    assert "video_url: clip.mp4: fails the model's validation file_size_mb< 16 (this file: 17" in (
        res.stderr
    )
    data_manifest = write(
        tmp_path / "d.yaml", f"model: {EDIT}\njobs:\n  - {{prompt: b, image: ['{data}']}}\n"
    )
    res = run_cli("validate", data_manifest)
    assert (
        res.returncode == 2
        and "image.0: fails the model's validation width_pixels> 14" in res.stderr
    )


def test_wrong_kind_urls_and_missing_files_all_reported_at_once(tmp_path):
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.7\n...")
    picture(tmp_path / "p.png", 20, 20)
    manifest = write(
        tmp_path / "m.yaml",
        f"model: {I2V}\n"
        "jobs:\n"
        "  - {prompt: a, image_url: doc.pdf}\n"
        "  - {prompt: b, image_url: 'http://example.com/a.png'}\n"
        "  - {prompt: c, image_url: 'https://192.168.1.20/a.png'}\n"
        "  - {prompt: d, image_url: 'file:///etc/passwd'}\n"
        "  - {prompt: e, image_url: nowhere.png}\n"
        "  - {prompt: g, image_url: example.com/a.png}\n"
        "  - {prompt: h, image_url: broken.png}\n"
        "sweep:\n"
        "  - {prompt: f, image_url: {files: 'none/*.png'}}\n",
    )
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    res = run_cli("validate", manifest)
    assert res.returncode == 2
    err = res.stderr
    # each names the file or URL it is about, as the manifest wrote it
    assert (
        f"m.yaml:3: model {I2V}: image_url: doc.pdf: expected image data, got a PDF document" in err
    )
    assert "m.yaml:4:" in err and "http://example.com/a.png: http:// URLs are refused" in err
    assert "m.yaml:5:" in err and "a.png: 192.168.1.20 is a private-network host" in err
    assert "m.yaml:6:" in err and "file:///etc/passwd: file:// URLs are not sent" in err
    assert "m.yaml:7:" in err and f"nowhere.png: no such file ({tmp_path / 'nowhere.png'})" in err
    assert "m.yaml:8:" in err and "example.com/a.png: no such file" in err
    assert "a URL needs https:// in front" in err
    assert "m.yaml:9:" in err and "broken.png: this png image cannot be read" in err
    assert "m.yaml:11:" in err and "no file matches 'none/*.png'" in err
    assert "Traceback" not in err


def test_wrong_media_kind_for_a_video_field(tmp_path):
    picture(tmp_path / "p.png", 20, 20)
    manifest = write(
        tmp_path / "m.yaml", f"model: {V2V}\njobs:\n  - {{prompt: a, video_url: p.png}}\n"
    )
    res = run_cli("validate", manifest)
    assert res.returncode == 2 and "expected video data, got image (png)" in res.stderr


def test_audio_only_iso_mp4_is_accepted_for_an_audio_field(tmp_path):
    """ffmpeg writes sound-only .m4a/.mp4 files with brands isom or mp42: the header cannot
    tell them from a video, so an audio field takes them (a PNG it still refuses)."""
    (tmp_path / "voice.m4a").write_bytes(bmff(b"isom"))
    (tmp_path / "song.mp4").write_bytes(bmff(b"mp42"))
    picture(tmp_path / "p.png", 20, 20)
    lines = [f"model: {INPAINT}", "jobs:"]
    lines += [f"  - {{audio: {name}, tags: pop}}" for name in ("voice.m4a", "song.mp4")]
    manifest = write(tmp_path / "m.yaml", "\n".join(lines) + "\n")
    res = run_cli("validate", manifest)
    assert res.returncode == 0, res.stderr
    write(tmp_path / "bad.yaml", f"model: {INPAINT}\njobs:\n  - {{audio: p.png, tags: pop}}\n")
    res = run_cli("validate", tmp_path / "bad.yaml")
    assert res.returncode == 2 and "expected audio data, got image (png)" in res.stderr


def test_allow_input_host_lets_http_and_private_hosts_through(tmp_path):
    manifest = write(
        tmp_path / "m.yaml",
        f"model: {I2V}\njobs:\n  - {{prompt: a, image_url: 'http://files.lan:8080/a.png'}}\n",
    )
    assert run_cli("validate", manifest).returncode == 2
    ok = run_cli("validate", manifest, "--allow-input-host", "files.lan")
    assert ok.returncode == 0, ok.stderr


def test_request_body_over_64_mib_is_refused(tmp_path):
    picture(tmp_path / "big.png", 20, 20, pad=7_900_000)
    items = ", ".join(["big.png"] * 7)  # 7 x 7.9 MB as base64: about 74 MB
    manifest = write(
        tmp_path / "m.yaml", f"model: {EDIT}\njobs:\n  - {{prompt: a, image: [{items}]}}\n"
    )
    res = run_cli("validate", manifest)
    assert res.returncode == 2
    assert "over RunComfy's limit of 64 MiB per request" in res.stderr


def test_unknown_validation_rule_is_skipped_with_one_warning(tmp_path):
    picture(tmp_path / "p.png", 20, 20)
    schema = {
        "type": "object",
        "properties": {
            "image_url": {
                "type": "string",
                "format": "image_uri",
                "validations": [{"validation_rule": "duration_s<", "validation_value": 5}],
            }
        },
    }
    manifest = write(
        tmp_path / "m.yaml",
        "model: my/model\njobs:\n  - {prompt: a, image_url: p.png}\n"
        "  - {prompt: b, image_url: p.png}\n",
    )
    expansion = load_jobs(manifest)
    check = MediaCheck(lambda model: schema, tmp_path, Limits())
    jobs = check.check_all(expansion.jobs, {})
    assert not check.problems and len(jobs) == 2
    assert [w for w in check.warnings if "duration_s<" in w] == [
        "model my/model: image_url: validation rule "
        "'duration_s<' is not known to batch_runner; it is not checked before sending"
    ]


# ---- folder sweeps, keys ---------------------------------------------------------------------

SWEEP = f"""\
model: {I2V}
options: {{name_template: "{{input_stem}}-{{index}}.{{ext}}"}}
sweep:
  - prompt: [slow zoom, pan left]
    image_url: {{files: "stills/*.png"}}
"""


def test_folder_sweep_counts_order_and_names(tmp_path):
    files = stills(tmp_path / "stills", 3)
    (tmp_path / "stills" / "notes.txt").write_text("not a picture")
    manifest = write(tmp_path / "m.yaml", SWEEP)
    jobs = load_jobs(manifest, name_template="{input_stem}-{index}.{ext}").jobs
    assert len(jobs) == 6
    assert [(j.inputs["prompt"], Path(j.inputs["image_url"]["local_file"]).name) for j in jobs] == [
        (p, f.name) for p in ("slow zoom", "pan left") for f in files
    ]
    assert [j.vars["input_stem"] for j in jobs[:3]] == ["s0", "s1", "s2"]
    res = run_cli("validate", manifest)
    assert res.returncode == 0 and "6 jobs" in res.stdout


def test_keys_follow_contents_not_paths(tmp_path):
    first = tmp_path / "a"
    stills(first / "stills", 3)
    write(first / "m.yaml", SWEEP)
    keys = [j.key for j in load_jobs(first / "m.yaml").jobs]
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    assert [j.key for j in load_jobs(moved / "m.yaml").jobs] == keys
    picture(moved / "stills" / "s1.png", 50, 50, (1, 2, 3))  # edited
    edited = [j.key for j in load_jobs(moved / "m.yaml").jobs]
    changed = [i for i, (a, b) in enumerate(zip(keys, edited, strict=True)) if a != b]
    assert changed == [1, 4]  # the two jobs of s1.png, nothing else


def test_identical_files_are_one_job_numbered_as_copies(tmp_path):
    pic = picture(tmp_path / "stills" / "a.png", 20, 20)
    shutil.copy(pic, tmp_path / "stills" / "b.png")
    write(
        tmp_path / "m.yaml",
        f"model: {I2V}\nsweep:\n  - {{prompt: x, image_url: {{files: 'stills/*'}}}}\n",
    )
    expansion = load_jobs(tmp_path / "m.yaml")
    a, b = expansion.jobs
    assert (a.copy, b.copy) == (0, 1) and a.key != b.key
    assert any("identical" in w for w in expansion.warnings)


def test_files_axis_only_in_sweeps(tmp_path):
    stills(tmp_path / "stills", 1)
    manifest = write(
        tmp_path / "m.yaml",
        f"model: {I2V}\njobs:\n  - {{prompt: x, image_url: {{files: 'stills/*'}}}}\n",
    )
    res = run_cli("validate", manifest)
    assert res.returncode == 2 and "only allowed in sweep: entries" in res.stderr


# ---- run and resume --------------------------------------------------------------------------


def test_folder_sweep_runs_and_resume_reports_changed_or_vanished_inputs(sim, tmp_path):
    files = stills(tmp_path / "stills", 3)
    manifest = write(tmp_path / "m.yaml", SWEEP)
    out = tmp_path / "run"
    env = sim_env(sim)
    # the jobs are recorded as a run would record them, none is sent yet
    store = StateStore.open(out, create=True)
    store.sync_jobs(load_jobs(manifest).jobs)
    store.set_meta({"settings": {"name_template": "{input_stem}-{index}.{ext}"}})
    store.close()
    files[0].unlink()
    picture(files[1], 60, 60, (9, 9, 9))
    res = run_cli("resume", out, "--json", "--no-progress", env=env)
    assert res.returncode == 1, res.stderr
    summary = json.loads(res.stdout)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 4
    assert sim.stats()["submitted"] == 2
    reasons = {f["reason"] for f in summary.get("failures", [])} or {
        r
        for (r,) in sqlite3.connect(out / "state.db").execute(
            "SELECT reason FROM jobs WHERE state = 'failed'"
        )
    }
    assert any("is gone since the job was made" in r for r in reasons)
    assert any("changed since the job was made" in r for r in reasons)
    names = sorted(p.name for p in (out / "videos").iterdir())  # videos go to videos/
    assert names == ["s2-3.mp4", "s2-6.mp4"]


def test_a_moved_folder_keeps_its_jobs_and_they_read_the_new_paths(sim, tmp_path):
    first = tmp_path / "a"
    stills(first / "stills", 2)
    write(first / "m.yaml", SWEEP)
    out = tmp_path / "run"
    store = StateStore.open(out, create=True)
    store.sync_jobs(load_jobs(first / "m.yaml").jobs)  # recorded, not sent
    store.close()
    moved = tmp_path / "b"
    first.rename(moved)
    res = run_cli(
        "run", moved / "m.yaml", "--out", out, "--json", "--no-progress", env=sim_env(sim)
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["jobs"] == 4 and "new jobs" not in res.stderr
    assert all(line["image_url"].startswith(str(moved)) for line in read_metadata(out))


def test_set_paths_are_relative_to_the_current_folder(tmp_path):
    picture(tmp_path / "here" / "p.png", 20, 20)
    (tmp_path / "elsewhere").mkdir()
    manifest = write(tmp_path / "elsewhere" / "m.yaml", f"model: {I2V}\njobs: [walk]\n")
    res = run_cli("validate", manifest, "--set", "image_url=p.png", cwd=tmp_path / "here")
    assert res.returncode == 0, res.stderr
    assert str(tmp_path / "here" / "p.png") in res.stdout


def test_a_users_schema_declares_media_fields_too(tmp_path):
    picture(tmp_path / "p.png", 10, 10)
    schema = {
        "type": "object",
        "required": ["photo"],
        "properties": {
            "photo": {
                "type": "string",
                "format": "image_uri",
                "validations": [{"validation_rule": "width_pixels>", "validation_value": 14}],
            }
        },
    }
    (tmp_path / "s.json").write_text(json.dumps(schema))
    manifest = write(tmp_path / "m.yaml", "model: my/own-model\njobs:\n  - {photo: p.png}\n")
    res = run_cli("validate", manifest, "--schema", tmp_path / "s.json", "--offline")
    assert res.returncode == 2
    assert (
        "m.yaml:3: model my/own-model: photo: p.png: fails the model's validation width_pixels> 14"
        in (res.stderr)
    )
