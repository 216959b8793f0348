"""What a user edits between runs: meta fields (free: nothing is sent or downloaded again),
spreadsheet CSVs with trailing empty columns, name templates with meta fields; and the
gallery's thumbnails, made once per output."""

from __future__ import annotations

import os

from conftest import read_metadata, run_cli, sim_env
from PIL import Image

from batch_runner.jobs import FileRecord
from batch_runner.manifest.load import load_jobs
from batch_runner.manifest.naming import slugify, split_word
from batch_runner.report.thumbs import thumb_name

FIRST = """\
jobs:
  - prompt: "a red fox"
    meta: {caption: "a fox", split: train}
  - prompt: "an owl"
    meta: {caption: "an owl"}
"""
EDITED = FIRST.replace('caption: "a fox"', 'caption: "a red fox in snow"').replace(
    '{caption: "an owl"}', '{caption: "an owl", split: test}'
)


def test_meta_edit_updates_metadata_without_sending_or_downloading(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.1")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(FIRST)
    out = tmp_path / "run"
    assert run_cli("run", manifest, "--out", out, env=sim_env(sim)).returncode == 0
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "images").iterdir()}
    stats = sim.stats()
    manifest.write_text(EDITED)
    res = run_cli("run", manifest, "--out", out, "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert "meta changed for 2 jobs" in res.stderr
    after = sim.stats()
    assert after["submitted"] == stats["submitted"] == 2
    assert after["requests"].get("file", 0) == stats["requests"].get("file", 0)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == files  # PNG text kept
    lines = sorted(read_metadata(out), key=lambda line: line["index"])
    assert [line["caption"] for line in lines] == ["a red fox in snow", "an owl"]
    assert lines[1]["split"] == "test"
    assert lines[1]["meta"] == {"caption": "an owl", "split": "test"}
    status = run_cli("status", out, "--json")
    assert '"done": 2' in status.stdout


def test_spreadsheet_csv_trailing_empty_columns_and_unknown_named_columns(tmp_path):
    good = tmp_path / "sheet.csv"
    good.write_text("prompt,resolution,,\r\na fox,2K,,\r\nan owl,,,\r\n,,,\r\n")
    assert [j.inputs["prompt"] for j in load_jobs(good).jobs] == ["a fox", "an owl"]
    typo = tmp_path / "typo.csv"
    typo.write_text("prompt,colour,,\na fox,,,\nan owl,,,\n")
    res = run_cli("validate", typo)
    assert res.returncode == 2 and "colour" in res.stderr, res.stderr
    spill = tmp_path / "spill.csv"
    spill.write_text("prompt,resolution,\na fox,2K,oops\n")
    res = run_cli("validate", spill)
    assert res.returncode == 2 and "spill.csv:2:" in res.stderr and "3 cells" in res.stderr


def test_meta_fields_in_name_templates(sim, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        'options: {name_template: "{split}/{slug}-{output_format}.{ext}"}\n'
        "jobs:\n  - {prompt: a fox, meta: {split: part-a}}\n"
        "  - {prompt: an owl, meta: {split: part-b}}\n"
    )
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    names = sorted(line["file_name"] for line in read_metadata(out))
    assert names == ["images/part-a/a-fox-png.png", "images/part-b/an-owl-png.png"]


def test_slugs_never_carry_a_split_word_datasets_would_read():
    for prompt in ("A train at dusk", "test", "the validation set", "eval: dev-val"):
        slug = slugify(prompt)
        assert split_word(f"images/00001-{slug}.png") is None, slug
    assert split_word("images/00001-a-train.png") == "train"
    assert slugify("A train at dusk") == "a-Train-at-dusk"


def test_thumbnails_are_made_once_and_smaller_than_their_originals(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.5")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"prompt": "a fox"}\n{"prompt": "an owl", "output_format": "jpeg"}\n')
    out = tmp_path / "run"
    assert run_cli("run", manifest, "--out", out, env=sim_env(sim)).returncode == 0
    report = (out / "report.html").read_text()
    for line in read_metadata(out):
        thumb = out / thumb_name(FileRecord(line["file_name"], 1, line["sha256"], 0))
        assert thumb.stat().st_size < line["bytes"]
        with Image.open(thumb) as img:
            assert max(img.size) <= 320
        assert f'src=".thumbs/{thumb.name}"' in report and f'href="{line["file_name"]}"' in report
    made = {p: p.stat().st_mtime_ns for p in (out / ".thumbs").iterdir()}
    assert len(made) == 2
    os.utime(out / "report.html", (0, 0))
    assert run_cli("report", out).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in (out / ".thumbs").iterdir()} == made  # not redone
