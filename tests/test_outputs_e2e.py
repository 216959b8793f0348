"""Outputs for data sets: metadata matches files, parameters embedded, sweeps named."""

from __future__ import annotations

import csv
import hashlib
import json

from conftest import read_metadata, run_cli, sim_env
from PIL import Image

from batch_runner.outputs.embed import read_jpeg_comments

SWEEP = """\
defaults: {resolution: "2048x2048 (1:1)"}
options: {name_template: "{style}/{subject}-{k}.{ext}"}
sweep:
  - prompt: "A {subject} in the style of {style}"
    vars: {subject: [fox, owl, heron], style: [ukiyo-e, bauhaus]}
    output_format: [png, jpeg]
    exclude: [{style: bauhaus, output_format: jpeg}]
    meta: {split: train}
"""


def test_sweep_run_names_files_and_records_vars(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.03")
    manifest = tmp_path / "sweep.yaml"
    manifest.write_text(SWEEP)
    val = run_cli("validate", manifest)
    assert val.returncode == 0, val.stderr
    assert "9 jobs" in val.stdout  # 3 subjects x 2 styles x 2 formats - 3 excluded
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--json", "--export-csv", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    lines = read_metadata(out)
    assert len(lines) == 9
    for line in lines:
        path = out / line["file_name"]
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == line["sha256"] and len(data) == line["bytes"]
        style, name = path.relative_to(out / "images").parts
        assert style == line["vars"]["style"] and name.startswith(line["vars"]["subject"])
        assert line["split"] == "train" and line["meta"] == {"split": "train"}
        with Image.open(path) as img:
            if img.format == "PNG":
                assert img.text["parameters"].startswith(line["prompt"])
            else:
                assert read_jpeg_comments(data)[0].startswith(line["prompt"])
    assert not (out / "metadata.csv").exists()  # beside metadata.jsonl it would stop datasets
    with open(out / "export.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["file_name"] for r in rows) == sorted(line["file_name"] for line in lines)
    report = (out / "report.html").read_text()
    assert 'class="grid"' in report and "heron" in report


def test_export_command_writes_jsonl(sim, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"prompt": "a fox", "meta": {"split": "test"}}\n{"prompt": "an owl"}\n')
    out = tmp_path / "run"
    assert run_cli("run", manifest, "--out", out, env=sim_env(sim)).returncode == 0
    res = run_cli("export", out, "--format", "jsonl", "--out", tmp_path / "x.jsonl")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert sorted(r["prompt"] for r in rows) == ["a fox", "an owl"]
    assert run_cli("report", out).returncode == 0
