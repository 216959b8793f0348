"""A name template whose first folder is a split (`{split}/{slug}.{ext}`, README) writes a
metadata.jsonl in each split folder as well, so `load_dataset("imagefolder")` keeps every column
per split (CONTRACT §4): exactly once per file across kill -9 and resume, over shards, beside
exports; folders that are not splits get none (the loader would read every file twice)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import datasets
from conftest import read_metadata, run_cli, sim_env, spawn_cli

from batch_runner.outputs.metadata import folder_line, split_folder

TEMPLATE = "{split}/{slug}.{ext}"  # README "Loading as a data set"
COLUMNS = ("image", "prompt", "key", "index", "model", "split", "score", "meta", "sha256", "bytes")
FAST = ("--latency", "0.05", "--image-scale", "0.02")


def _manifest(path: Path, n: int, splits=("train", "test")) -> Path:
    lines = ["defaults: {output_format: png}", "jobs:"]
    for i in range(n):
        split = splits[i % len(splits)]
        job = {"prompt": f"a {split} picture number {i}", "meta": {"split": split, "score": i}}
        lines.append(f"  - {json.dumps(job)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _load(data_dir: Path, tmp_path: Path, cache: str = "hf") -> datasets.DatasetDict:
    return datasets.load_dataset(
        "imagefolder", data_dir=str(data_dir), cache_dir=str(tmp_path / cache)
    )


def _folder_lines(folder: Path) -> list[dict]:
    text = (folder / "metadata.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _check_split_files(run_dir: Path, splits=("train", "test")) -> None:
    """Each split folder's metadata.jsonl: the root's lines of its files, each once, file names
    relative to the folder, every named file there."""
    root = read_metadata(run_dir)
    for split in splits:
        folder = f"images/{split}"
        want = [folder_line(line, folder) for line in root if line["meta"]["split"] == split]
        got = _folder_lines(run_dir / folder)
        names = [line["file_name"] for line in got]
        assert len(names) == len(set(names)), f"a duplicate line in {folder}"
        assert sorted(got, key=lambda x: x["key"]) == sorted(want, key=lambda x: x["key"])
        assert all((run_dir / folder / name).is_file() for name in names)
        on_disk = sorted(p.name for p in (run_dir / folder).glob("*.png"))
        assert sorted(names) == on_disk


def test_split_folder_is_the_first_folder_datasets_reads_as_a_split():
    assert split_folder("images/train/00001-a-fox.png") == "images/train"
    assert split_folder("videos/test/sub/clip.mp4") == "videos/test"
    assert split_folder("shard-0-of-2/images/validation/x.png") == "shard-0-of-2/images/validation"
    assert split_folder("images/00001-a-Train-at-dusk.png") is None  # a file, not a folder
    assert split_folder("images/cats/x.png") is None  # not a split: no second metadata file
    assert split_folder("images/Train/x.png") is None  # datasets' match is case-sensitive
    line = {"file_name": "images/train/a.png", "key": "k"}
    assert folder_line(line, "images/train") == {"file_name": "a.png", "key": "k"}


def test_split_template_keeps_every_column_per_split(make_sim, tmp_path):
    sim = make_sim(*FAST)
    manifest = _manifest(tmp_path / "m.yaml", 6)
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--name-template", TEMPLATE, env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    _check_split_files(out)
    res = run_cli("export", out, "--format", "csv")  # an export beside them changes nothing
    assert res.returncode == 0, res.stderr

    ds = _load(out, tmp_path)
    assert sorted(ds) == ["test", "train"]
    for split in ("train", "test"):
        rows = ds[split]
        print(f"{split}: {rows.num_rows} rows, columns {rows.column_names}")
        assert rows.num_rows == 3
        for column in COLUMNS:
            assert column in rows.column_names, (split, column)
        assert set(rows["split"]) == {split}
        assert sorted(rows["prompt"]) == sorted(
            line["prompt"] for line in read_metadata(out) if line["split"] == split
        )
    one = _load(out / "images" / "train", tmp_path, "hf-one")  # one split folder on its own
    assert one["train"].num_rows == 3 and "prompt" in one["train"].column_names


def test_kill_9_and_resume_write_each_split_line_once(make_sim, tmp_path):
    sim = make_sim("--latency", "0.3:0.8", "--image-scale", "0.02")
    manifest = _manifest(tmp_path / "m.yaml", 24)
    out = tmp_path / "run"
    args = ("--out", out, "--name-template", TEMPLATE, "--concurrency", "8", "--no-progress")
    proc = spawn_cli("run", manifest, *args, env=sim_env(sim))
    deadline = time.monotonic() + 60
    while not list(out.glob("images/*/*.png")) and time.monotonic() < deadline:
        time.sleep(0.02)  # killed while files arrive: some lines written, some not
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    res = run_cli("resume", out, "--no-progress", "--json", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"done": 24}
    assert len(read_metadata(out)) == 24
    _check_split_files(out)

    # the crash cases a kill may leave: a line lost, a whole file never flushed
    test_file = out / "images" / "test" / "metadata.jsonl"
    before = test_file.read_bytes()
    test_file.write_bytes(b"".join(before.splitlines(keepends=True)[:-1]))
    (out / "images" / "train" / "metadata.jsonl").unlink()
    res = run_cli("resume", out, "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    _check_split_files(out)
    assert sorted(test_file.read_bytes().splitlines()) == sorted(before.splitlines())
    submitted = sim.stats()["submitted"]
    assert run_cli("resume", out, "--no-progress", env=sim_env(sim)).returncode == 0
    _check_split_files(out)  # a resume of a whole run writes nothing twice
    assert sim.stats()["submitted"] == submitted


def test_shards_with_a_split_template_merge_into_one_data_set(make_sim, tmp_path):
    sim = make_sim(*FAST)
    manifest = _manifest(tmp_path / "m.yaml", 8)
    out = tmp_path / "run"
    for k in range(2):
        res = run_cli(
            "run", manifest, "--out", out, "--shard", f"{k}/2", "--name-template", TEMPLATE,
            env=sim_env(sim),
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        shard = out / f"shard-{k}-of-2"
        assert not (shard / "metadata.jsonl").exists()  # a shard's own lines are named apart
        for split in ("train", "test"):
            if (shard / "images" / split).is_dir():
                names = [line["file_name"] for line in _folder_lines(shard / "images" / split)]
                assert all((shard / "images" / split / name).is_file() for name in names)
    res = run_cli("merge", out)
    assert res.returncode == 0, res.stderr
    assert len(read_metadata(out)) == 8
    ds = _load(out, tmp_path)
    assert sorted(ds) == ["test", "train"]
    keys = [key for split in ds for key in ds[split]["key"]]
    assert len(keys) == len(set(keys)) == 8  # every file once, over both shards
    assert all(column in ds["train"].column_names for column in COLUMNS)


def test_folders_that_are_not_splits_get_no_metadata_file(make_sim, tmp_path):
    sim = make_sim(*FAST)
    manifest = _manifest(tmp_path / "m.yaml", 4, splits=("cats", "dogs"))
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--name-template", TEMPLATE, env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("metadata.jsonl")) == [
        "metadata.jsonl"
    ]
    ds = _load(out, tmp_path)
    assert list(ds) == ["train"] and ds["train"].num_rows == 4  # each file once
    assert "prompt" in ds["train"].column_names
