"""`export --format parquet|webdataset`: runs on the simulator exported, then read back by the
libraries people load them with (`datasets`, `webdataset`); shards bounded and atomic, two
exports byte-identical, a folder of shards exported as one data set, mistakes refused."""

from __future__ import annotations

import gc
import io
import json
import tarfile
import warnings
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import webdataset
from conftest import read_metadata, run_cli, sim_env
from PIL import Image

from batch_runner.errors import UsageError
from batch_runner.exports.dataset import parse_size
from batch_runner.exports.parquet import ParquetSampleWriter, plan
from batch_runner.exports.samples import Sample
from batch_runner.exports.webdataset import WebDatasetSampleWriter
from batch_runner.jobs import FileRecord, JobRecord, JobState

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c49444154789c63606060000000040001f61738550000000049454e44ae426082"
)
VIDEO = "alibaba/happyhorse-1.1/text-to-video"
IMAGES = """\
defaults: {output_format: png}
jobs:
  - prompt: "a red fox"
    meta: {split: train, score: 1}
  - prompt: "an owl at night"
    meta: {split: test, score: 2.5}
  - prompt: "a lighthouse"
    meta: {split: train}
"""
WITH_VIDEO = (
    IMAGES
    + f"""\
  - model: {VIDEO}
    prompt: "a storm at sea"
    duration: 3
"""
)
FAILING = (
    WITH_VIDEO
    + """\
  - prompt: "a paper boat"
"""
)


def write_prompts(prompts: list[str]) -> str:
    return "defaults: {output_format: png}\njobs:\n" + "".join(f"  - {p!r}\n" for p in prompts)


def run(sim, manifest: Path, out: Path, *extra: str) -> None:
    res = run_cli("run", manifest, "--out", out, "--no-progress", *extra, env=sim_env(sim))
    assert "Traceback" not in res.stderr, res.stderr
    return res


def export(run_dir: Path, fmt: str, *extra: str):
    res = run_cli("export", run_dir, "--format", fmt, *extra)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def in_order(lines: list[dict]) -> list[dict]:
    """metadata.jsonl lines in job order (the file has them in the order files arrived)."""
    return sorted(lines, key=lambda line: (line["index"], line["k"]))


def load_parquet(files: str, tmp_path: Path) -> datasets.Dataset:
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    return ds["train"]


def read_shards(folder: Path) -> list[dict]:
    """Every sample of the folder's tar shards, through webdataset.WebDataset."""
    urls = [str(p) for p in sorted(folder.glob("*.tar"))]
    # webdataset 1.0 leaves its tar streams to the garbage collector
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        ds = webdataset.WebDataset(urls, shardshuffle=False)
        samples = list(ds)
        del ds
        gc.collect()
    return samples


@pytest.fixture
def mixed_run(make_sim, tmp_path):
    """Three PNGs and an MP4 done, and a job that failed (so not exported)."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.02")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(WITH_VIDEO)
    out = tmp_path / "run"
    assert run(sim, manifest, out).returncode == 0
    failing = make_sim("--latency", "0.05", "--fail-rate", "1")
    manifest.write_text(FAILING)
    assert run(failing, manifest, out, "--retries", "0").returncode == 1
    return out


def test_parquet_loads_with_datasets_images_decoded_and_metadata_intact(mixed_run, tmp_path):
    out = mixed_run
    before = (out / "metadata.jsonl").read_bytes()
    res = export(out, "parquet")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        f"{out / 'export.parquet'} (4 samples, 1 file; 1 job without files not exported)"
    )
    lines = in_order(read_metadata(out))
    rows = load_parquet(str(out / "export.parquet"), tmp_path)
    print(f"parquet: {rows.num_rows} rows, columns {rows.column_names}")
    assert rows.num_rows == len(lines) == 4
    assert rows.column_names[:2] == ["image", "video"]  # no audio in this run: no column
    assert isinstance(rows.features["image"], datasets.Image)
    for row, line in zip(rows, lines, strict=True):
        for column in ("file_name", "key", "index", "model", "media_type", "prompt", "sha256"):
            assert row[column] == line[column], column
        data = (out / line["file_name"]).read_bytes()
        if line["media_type"] == "image":
            assert isinstance(row["image"], Image.Image) and row["video"] is None
            assert row["image"].tobytes() == Image.open(io.BytesIO(data)).tobytes()
            assert row["meta.split"] == line["split"] and row["state"] == "done"
        else:
            assert row["image"] is None
            assert row["video"] == {"bytes": data, "path": line["file_name"]}
            assert row["duration"] == 3 and row["meta.split"] is None
    assert [r for r in rows["meta.score"]] == [1.0, 2.5, None, None]  # one type per column
    assert (out / "metadata.jsonl").read_bytes() == before
    assert list(out.glob("metadata.*")) == [out / "metadata.jsonl"]
    assert not list(out.rglob("*.part"))

    again = export(out, "parquet", "--out", tmp_path / "again.parquet")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.parquet").read_bytes() == (out / "export.parquet").read_bytes()


def test_webdataset_samples_read_back_and_two_exports_are_identical(mixed_run, tmp_path):
    out = mixed_run
    res = export(out, "webdataset")
    assert res.returncode == 0, res.stderr
    folder = out / "export-webdataset"
    assert res.stdout.strip() == f"{folder} (4 samples, 1 file; 1 job without files not exported)"
    assert sorted(p.name for p in folder.iterdir()) == ["00000.tar", "_stats.json"]
    lines = in_order(read_metadata(out))
    samples = read_shards(folder)
    assert [s["__key__"] for s in samples] == [f"{i:05d}_1" for i in (1, 2, 3, 4)]
    for sample, line in zip(samples, lines, strict=True):
        ext = line["file_name"].rsplit(".", 1)[1]
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {ext, "json"}
        assert sample[ext] == (out / line["file_name"]).read_bytes()
        assert json.loads(sample["json"]) == line  # the file's metadata.jsonl line
    stats = json.loads((folder / "_stats.json").read_text())
    assert stats == {
        "samples": 4,
        "bytes": sum(line["bytes"] for line in lines),
        "models": {VIDEO: 1, "bytedance/seedream-5/lite/text-to-image": 3},
        "not_exported": {"failed": 1},
        "shards": [{"name": "00000.tar", "samples": 4, "bytes": stats["shards"][0]["bytes"]}],
    }
    with tarfile.open(folder / "00000.tar") as tar:
        assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in tar} == {(0, 0, 0, "", 0o644)}

    again = export(out, "webdataset", "--out", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    for name in ("00000.tar", "_stats.json"):
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name


def test_shards_are_bounded_and_load_with_both_loaders(make_sim, tmp_path):
    """Images only (the `webdataset` loader of `datasets` wants one set of file types)."""
    sim = make_sim("--latency", "0.05", "--image-scale", "0.01")
    manifest = tmp_path / "m.yaml"
    # one JSON type per metadata field: that loader refuses a field of 1 in one sample and 2.5
    # in another (it infers the types from the first samples)
    manifest.write_text(write_prompts([f"a heron, take {i}" for i in range(8)]))
    out = tmp_path / "run"
    assert run(sim, manifest, out).returncode == 0
    sizes = sorted(line["bytes"] for line in read_metadata(out))
    bound = 2 * sizes[-1] + 20_000  # room for two files (and tar headers) per shard, not three
    res = export(out, "webdataset", "--shard-size", str(bound))
    assert res.returncode == 0, res.stderr
    folder = out / "export-webdataset"
    tars = sorted(folder.glob("*.tar"))
    assert [p.name for p in tars] == [f"{i:05d}.tar" for i in range(len(tars))]
    assert len(tars) >= 3 and all(p.stat().st_size <= bound for p in tars)
    loaded = datasets.load_dataset(
        "webdataset", data_files=str(folder / "*.tar"), cache_dir=str(tmp_path / "hf")
    )["train"]
    assert loaded.num_rows == 8 and isinstance(loaded[0]["png"], Image.Image)
    assert [row["json"]["index"] for row in loaded] == list(range(1, 9))

    # parquet: the media bytes count against the bound (two files, not three, per shard)
    bound = 2 * sizes[-1] + 1
    res = export(out, "parquet", "--out", tmp_path / "pq", "--shard-size", str(bound))
    assert res.returncode == 0, res.stderr
    parts = sorted((tmp_path / "pq").glob("*.parquet"))
    assert [p.name for p in parts] == [f"{i:05d}.parquet" for i in range(len(parts))]
    assert len(parts) >= 3
    for part in parts:  # each shard's files fit the bound
        assert sum(pq.read_table(part, columns=["bytes"])["bytes"].to_pylist()) <= bound
    footer = 12_000  # the schema, the column statistics and the data set's features
    assert all(p.stat().st_size <= bound + footer for p in parts), [p.stat().st_size for p in parts]
    rows = load_parquet(str(tmp_path / "pq" / "*.parquet"), tmp_path)
    assert rows["index"] == list(range(1, 9)) and isinstance(rows[7]["image"], Image.Image)

    # one bigger bound: fewer shards, and none left over from the export before
    res = export(out, "webdataset", "--shard-size", "1GB")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["00000.tar", "_stats.json"]
    assert len(read_shards(folder)) == 8


def test_a_folder_of_shards_exports_as_one_data_set(sim, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(IMAGES + "".join(f'  - "a kite, take {i}"\n' for i in range(5)))
    out = tmp_path / "run"
    for k in (0, 1):
        assert run(sim, manifest, out, "--shard", f"{k}/2").returncode == 0
    lines = _shard_lines(out, 0) + _shard_lines(out, 1)
    assert export(out, "webdataset").returncode == 0
    samples = read_shards(out / "export-webdataset")
    assert len(samples) == len(lines) == 8
    assert [s["__key__"] for s in samples] == [
        f"shard-{line['shard']}-of-2_{line['index']:05d}_1" for line in lines
    ]
    for sample, line in zip(samples, lines, strict=True):
        meta = json.loads(sample["json"])
        assert meta["file_name"] == f"shard-{line['shard']}-of-2/{line['file_name']}"
        assert sample["png"] == (out / meta["file_name"]).read_bytes()
    assert export(out, "parquet").returncode == 0
    rows = load_parquet(str(out / "export.parquet"), tmp_path)
    assert rows["file_name"] == [json.loads(s["json"])["file_name"] for s in samples]


def _shard_lines(out: Path, k: int) -> list[dict]:
    path = out / f"shard-{k}-of-2" / "shard-metadata.jsonl"
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    return [{**line, "shard": k} for line in in_order(lines)]


def test_mistakes_are_refused_with_one_clear_line(sim, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(IMAGES)
    out = tmp_path / "run"
    assert run(sim, manifest, out).returncode == 0
    cases = [
        (("parquet", "--out", out / "metadata.parquet"), "may not be named metadata.parquet"),
        (("webdataset", "--out", tmp_path / "x.tar"), "a webdataset is a folder"),
        (("webdataset", "--out", out), "is a run directory"),
        (("parquet", "--out", tmp_path / "x.parquet", "--shard-size", "1MB"), "give --out FOLDER"),
        (("webdataset", "--shard-size", "12XB"), "--shard-size must be a size like"),
        (("csv", "--shard-size", "1GB"), "--shard-size is for --format parquet or webdataset"),
    ]
    for args, message in cases:
        res = export(out, *args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    assert not (out / "metadata.parquet").exists() and not (tmp_path / "x.tar").exists()

    # a file gone from disk: named, and no shard appears (not even a partial one)
    first = out / in_order(read_metadata(out))[0]["file_name"]
    first.unlink()
    for fmt in ("webdataset", "parquet"):
        res = export(out, fmt)
        assert res.returncode == 2 and f"{first}: job 1 " in res.stderr, res.stderr
    assert not (out / "export.parquet").exists()
    assert not list((out / "export-webdataset").glob("*.tar"))
    assert not list(out.rglob("*.part"))


def test_parse_size():
    assert parse_size("500MB") == 500_000_000 and parse_size("1GB") == 10**9
    assert parse_size("64MiB") == 64 * 2**20 and parse_size("1.5kb") == 1500
    assert parse_size("4096") == 4096
    for bad in ("", "0", "12XB", "-1GB", "MB"):
        with pytest.raises(UsageError, match="--shard-size"):
            parse_size(bad)


def test_parquet_columns_get_one_type_each(tmp_path):
    """Pure writer over samples in memory: the type each column gets from its values."""
    values = [
        {"seed": 2**64 - 1, "n": 1, "flag": True, "tags": ["a", "b"], "image": "in.png"},
        {"seed": 7, "n": 2.5, "flag": False, "tags": "c"},
    ]
    samples = []
    for i, inputs in enumerate(values, 1):
        path = tmp_path / f"{i}.png"
        path.write_bytes(PNG)
        f = FileRecord(path.name, 1, "0" * 64, len(PNG))
        job = JobRecord(f"k{i}", i, "m", {"prompt": "p", **inputs}, JobState.DONE, files=[f])
        samples.append(Sample(job, f, path, f"{i:05d}_1"))
    layout = plan(samples)
    writer = ParquetSampleWriter(tmp_path / "out.parquet", layout)
    for sample in samples:
        writer.write(sample)
    assert writer.close() == [tmp_path / "out.parquet"]
    table = pq.read_table(tmp_path / "out.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert types["seed"] == "string" and types["n"] == "double" and types["flag"] == "bool"
    assert types["tags"] == "string" and types["inputs.image"] == "string"
    rows = table.to_pylist()
    assert [r["seed"] for r in rows] == [str(2**64 - 1), "7"]
    assert [r["tags"] for r in rows] == ['["a", "b"]', "c"] and rows[1]["n"] == 2.5
    assert rows[0]["image"] == {"bytes": PNG, "path": "1.png"}
    assert rows[0]["inputs.image"] == "in.png"


def test_a_job_with_several_files_gives_one_sample_per_file(tmp_path):
    files = []
    for k, ext in ((1, "png"), (2, "png"), (3, "jpg")):
        (tmp_path / f"00001-a.{k}.{ext}").write_bytes(PNG + bytes([k]))  # dots in the name
        files.append(FileRecord(f"00001-a.{k}.{ext}", k, "0" * 64, len(PNG) + 1))
    job = JobRecord("key1", 1, "m", {"prompt": "p"}, JobState.DONE, files=files)
    writer = WebDatasetSampleWriter(tmp_path / "wds", 10**9)
    for f in files:
        writer.write(Sample(job, f, tmp_path / f.file_name, f"00001_{f.k}"))
    assert [s.as_json() for s in writer.close()][0]["samples"] == 3
    samples = read_shards(tmp_path / "wds")
    assert [(s["__key__"], sorted(set(s) & {"png", "jpg", "json"})) for s in samples] == [
        ("00001_1", ["json", "png"]),
        ("00001_2", ["json", "png"]),
        ("00001_3", ["jpg", "json"]),
    ]
    assert [s.get("png", s.get("jpg"))[-1] for s in samples] == [1, 2, 3]
    assert [json.loads(s["json"])["k"] for s in samples] == [1, 2, 3]
