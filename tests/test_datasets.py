"""Run directories load with Hugging Face `datasets` (imagefolder) whatever the prompts and meta
fields say: prompts with split words, exports beside metadata.jsonl, reserved or mixed-type meta
fields refused before anything is sent; thumbnails never become data."""

from __future__ import annotations

import json

import datasets
from conftest import read_metadata, run_cli, sim_env

TRAPS = """\
defaults: {output_format: png}
jobs:
  - prompt: "a train at dusk"
    meta: {split: train, score: 1}
  - prompt: "test pattern of a fox"
    meta: {split: test, score: 2.5}
  - prompt: "validation"
    meta: {split: validation}
  - "Training day eval"
"""


def load(run_dir, tmp_path):
    return datasets.load_dataset(
        "imagefolder", data_dir=str(run_dir), cache_dir=str(tmp_path / "hf-cache")
    )


def test_trap_prompts_and_exports_load_as_one_data_set(make_sim, tmp_path):
    sim = make_sim("--latency", "0.05", "--image-scale", "0.2")
    manifest = tmp_path / "traps.yaml"
    manifest.write_text(TRAPS)
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--export-csv", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    before = (out / "metadata.jsonl").read_bytes()
    res = run_cli("export", out, "--format", "jsonl")
    assert res.returncode == 0 and "export.jsonl" in res.stdout, res.stderr
    assert (out / "export.csv").is_file() and (out / "export.jsonl").is_file()
    assert (out / "metadata.jsonl").read_bytes() == before  # byte-identical
    assert list(out.glob("metadata.*")) == [out / "metadata.jsonl"]
    assert list((out / ".thumbs").iterdir())  # the gallery's thumbnails are there, hidden

    ds = load(out, tmp_path)
    assert list(ds) == ["train"]  # no split guessed from "train", "test", "validation"
    rows = ds["train"]
    print(f"datasets loaded: {rows.num_rows} rows, columns {rows.column_names}")
    assert rows.num_rows == 4
    for column in ("image", "prompt", "key", "index", "model", "split", "score", "meta"):
        assert column in rows.column_names
    assert sorted(rows["prompt"]) == sorted(line["prompt"] for line in read_metadata(out))
    assert sorted(s for s in rows["split"] if s) == ["test", "train", "validation"]


def test_export_never_writes_a_metadata_file_into_the_run_dir(sim, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"prompt": "a fox"}\n')
    out = tmp_path / "run"
    assert run_cli("run", manifest, "--out", out, env=sim_env(sim)).returncode == 0
    before = (out / "metadata.jsonl").read_bytes()
    for name in ("metadata.jsonl", "metadata.csv"):
        res = run_cli("export", out, "--format", name.rsplit(".")[1], "--out", out / name)
        assert res.returncode == 2 and "may not be named" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert (out / "metadata.jsonl").read_bytes() == before
    assert not (out / "metadata.csv").exists()


def test_reserved_and_mixed_type_meta_fields_are_refused_before_sending(sim, tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"prompt": "a fox", "meta": {"image": "fox.png", "q": 1}},
        {"prompt": "an owl", "meta": {"source_file_name": "x", "q": "high"}},
        {"prompt": "a heron", "meta": {"prompt": "other"}},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = run_cli("run", manifest, "--out", tmp_path / "run", env=sim_env(sim))
    assert res.returncode == 2, res.stderr
    err = res.stderr
    assert "m.jsonl:1: meta.image: 'image' is a reserved column name" in err
    assert "m.jsonl:2: meta.source_file_name: " in err
    assert "m.jsonl:2: meta.q: is a string here but a number at line 1" in err
    assert "m.jsonl:3: meta.prompt: 'prompt' is also an input" in err
    assert sim.stats()["submitted"] == 0
