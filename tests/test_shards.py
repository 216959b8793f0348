"""Shards (CONTRACT §7): --shard and --shards, a run directory per shard, merge, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli, sim_env, spawn_cli, write_manifest

from batch_runner import load_jobs
from batch_runner.shards import Shard, shard_of

FAST = ("--latency", "0.02:0.1", "--image-scale", "0.02")


def _keys(manifest: Path) -> list[str]:
    return [job.key for job in load_jobs(manifest).jobs]


def _files_on_disk(run_dir: Path) -> set[str]:
    return {
        str(p.relative_to(run_dir))
        for p in run_dir.glob("shard-*/images/**/*")
        if p.is_file() and not p.name.endswith(".part")
    }


def _run_shards(manifest: Path, out: Path, n: int, env: dict[str, str], *extra: str) -> None:
    for k in range(n):
        res = run_cli(
            "run", manifest, "--out", out, "--shard", f"{k}/{n}", "--no-progress", *extra, env=env
        )
        assert res.returncode == 0, res.stderr


def _status(run_dir: Path) -> dict:
    res = run_cli("status", run_dir, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _wait(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_shard_of_is_a_pure_stable_function_of_the_key():
    # fixed values: the same on every machine and Python (sha256, never the salted hash())
    keys = ("c5c2d0f1acf24781", "af6637cc2cf4e2a0", "0")
    assert [shard_of(k, 4) for k in keys] == [0, 1, 0]
    assert [shard_of(k, 10) for k in keys] == [4, 9, 0]
    assert shard_of("c5c2d0f1acf24781", 1) == 0
    assert shard_of("0", 7) == int("5feceb66ffc86f38", 16) % 7  # sha256("0") starts 5feceb66…
    keys = [f"{i:016x}" for i in range(4000)]
    sizes = [sum(Shard(k, 4).holds(key) for key in keys) for k in range(4)]
    assert sum(sizes) == 4000 and min(sizes) > 850  # every key in one shard, evenly spread


def test_shards_are_disjoint_and_complete_and_merge_into_one_data_set(make_sim, tmp_path):
    sim = make_sim(*FAST)
    manifest = write_manifest(tmp_path / "m.yaml", [f"shard job {i}" for i in range(24)])
    out = tmp_path / "run"
    _run_shards(manifest, out, 3, sim_env(sim))
    per_shard = [
        [line["key"] for line in read_metadata_file(out / f"shard-{k}-of-3")] for k in range(3)
    ]
    union = [key for keys in per_shard for key in keys]
    assert sorted(union) == sorted(_keys(manifest)) and len(set(union)) == 24
    assert all(keys for keys in per_shard)
    assert sim.stats()["submitted"] == 24

    res = run_cli("merge", out)
    assert res.returncode == 0, res.stderr
    lines = read_metadata(out)
    names = {line["file_name"] for line in lines}
    assert len(lines) == 24 and names == _files_on_disk(out)  # every file once, where it is
    assert all(name.startswith("shard-") for name in names)
    assert not (out / "images").exists()  # nothing copied
    report = (out / "report.html").read_text()
    assert all(f'src="{name}"' in report for name in names)
    first = (out / "metadata.jsonl").read_bytes()
    assert run_cli("merge", out).returncode == 0
    assert (out / "metadata.jsonl").read_bytes() == first  # idempotent

    status = _status(out)
    assert status["jobs"] == 24 and status["counts"] == {"done": 24} and status["files"] == 24
    assert set(status["shards"]) == {f"shard-{k}-of-3" for k in range(3)}
    assert [s["jobs"] for s in status["shards"].values()] == [len(k) for k in per_shard]
    assert all(s["state"] == "done" and s["last_activity"] for s in status["shards"].values())
    human = run_cli("status", out)
    assert human.returncode == 0 and "shard-2-of-3: done" in human.stdout


def _two_shards(sim, tmp_path: Path, prompts: list[str]) -> tuple[object, Path, Path]:
    """The prompts run as shards 0/2 and 1/2 into tmp_path/run."""
    manifest = write_manifest(tmp_path / "m.yaml", prompts)
    _run_shards(manifest, tmp_path / "run", 2, sim_env(sim))
    return sim, manifest, tmp_path / "run"


def read_metadata_file(shard_dir: Path) -> list[dict]:
    text = (shard_dir / "shard-metadata.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_adding_rows_moves_no_job_between_shards(make_sim, tmp_path):
    prompts = [f"grow job {i}" for i in range(10)]
    sim, manifest, out = _two_shards(make_sim(*FAST), tmp_path, prompts)
    before = {k: set(_shard_keys(out, k, 2)) for k in range(2)}
    write_manifest(manifest, prompts[:4] + ["new A", "new B"] + prompts[4:] + ["new C"])
    _run_shards(manifest, out, 2, sim_env(sim))
    after = {k: set(_shard_keys(out, k, 2)) for k in range(2)}
    assert all(before[k] <= after[k] for k in range(2))  # old jobs stay where they were
    assert sorted(after[0] | after[1]) == sorted(_keys(manifest))
    assert sim.stats()["submitted"] == 13  # the 3 new rows only


def _shard_keys(out: Path, k: int, n: int) -> list[str]:
    return [line["key"] for line in read_metadata_file(out / f"shard-{k}-of-{n}")]


def test_kill_9_of_one_shard_then_restart_finishes_without_paying_twice(make_sim, tmp_path):
    sim = make_sim("--latency", "1:2", "--image-scale", "0.02")
    manifest = write_manifest(tmp_path / "m.yaml", [f"kill job {i}" for i in range(12)])
    out = tmp_path / "run"
    env = sim_env(sim, JOB_COMPLETION_INDEX="1")
    mine = sum(shard_of(key, 2) == 1 for key in _keys(manifest))
    args = ("run", manifest, "--out", out, "--shards", "2", "--no-progress")
    proc = spawn_cli(*args, "--concurrency", "12", env=env)
    _wait(lambda: sim.stats()["submitted"] >= mine)
    time.sleep(0.3)  # the last request_id is committed right after its answer
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    res = run_cli(*args, env=env)
    assert res.returncode == 0, res.stderr
    _run_shards(manifest, out, 2, sim_env(sim), "--concurrency", "12")  # shard 0, shard 1 is done
    status = _status(out)
    assert status["counts"] == {"done": 12} and status["possible_duplicates"] == 0
    assert sim.stats()["submitted"] == 12  # nothing submitted twice


def test_a_run_directory_refuses_another_number_of_shards(make_sim, tmp_path):
    sim = make_sim(*FAST)
    manifest = write_manifest(tmp_path / "m.yaml", ["a", "b", "c"])
    out = tmp_path / "run"
    _run_shards(manifest, out, 2, sim_env(sim))
    for args in (("--shard", "0/3"), ("--shards", "4")):
        res = run_cli(
            "run", manifest, "--out", out, *args, env=sim_env(sim, JOB_COMPLETION_INDEX="0")
        )
        assert res.returncode == 2 and "holds shards of 2" in res.stderr, res.stderr
    plain = run_cli("run", manifest, "--out", out, env=sim_env(sim))
    assert plain.returncode == 2 and "--shards 2" in plain.stderr
    assert not (out / "shard-0-of-3").exists() and not (out / "state.db").exists()
    for command in ("report", "export", "resume"):
        res = run_cli(command, out, env=sim_env(sim))
        assert res.returncode == 2 and "shard" in res.stderr, (command, res.stderr)
    unsharded = tmp_path / "plain"
    assert run_cli("run", manifest, "--out", unsharded, env=sim_env(sim)).returncode == 0
    res = run_cli("run", manifest, "--out", unsharded, "--shard", "0/2", env=sim_env(sim))
    assert res.returncode == 2 and "without shards" in res.stderr
    assert sim.stats()["submitted"] == 6  # refusals sent nothing
    assert "Traceback" not in res.stderr


def test_shards_takes_k_from_the_engine_or_exits_2(make_sim, tmp_path):
    sim = make_sim(*FAST)
    manifest = write_manifest(tmp_path / "m.yaml", ["a", "b", "c", "d"])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--shards", "2", env=sim_env(sim))
    assert res.returncode == 2 and "JOB_COMPLETION_INDEX" in res.stderr
    assert "SLURM_ARRAY_TASK_ID" in res.stderr and not out.exists()
    slurm = sim_env(sim, SLURM_ARRAY_TASK_ID="8", SLURM_ARRAY_TASK_MIN="7")
    sharded = ("run", manifest, "--out", out, "--shards", "2", "--no-progress")
    res = run_cli(*sharded, "--max-cost-total", "5", env=slurm)
    assert res.returncode == 0, res.stderr
    assert "budget: $2.5 for this shard" in res.stderr  # 1/N of the total as its --max-cost
    assert (out / "shard-1-of-2" / "state.db").is_file()
    bad = sim_env(sim, JOB_COMPLETION_INDEX="2")
    res = run_cli("run", manifest, "--out", out, "--shards", "2", env=bad)
    assert res.returncode == 2 and "not in 0..1" in res.stderr
    for args in (("--shard", "2/2"), ("--shard", "x"), ("--shard", "0/2", "--shards", "2")):
        res = run_cli("run", manifest, "--out", out, *args, env=sim_env(sim))
        assert res.returncode == 2 and "Traceback" not in res.stderr, args
    res = run_cli("run", manifest, "--out", out, "--max-cost-total", "5", env=sim_env(sim))
    assert res.returncode == 2 and "--shards" in res.stderr


def test_merge_while_shards_run_then_again_at_the_end(make_sim, tmp_path):
    sim = make_sim("--latency", "0.1:0.3", "--image-scale", "0.02")
    # slow jobs in both shards keep them running while the test looks
    prompts = [f"live job {i}" for i in range(12)] + [f"slow {i} [sim:latency=6]" for i in range(4)]
    manifest = write_manifest(tmp_path / "m.yaml", prompts)
    slow = {
        shard_of(job.key, 2) for job in load_jobs(manifest).jobs if "slow" in job.inputs["prompt"]
    }
    assert slow == {0, 1}
    out = tmp_path / "run"
    sharded = ("run", manifest, "--out", out, "--shards", "2", "--no-progress")
    procs = [
        spawn_cli(*sharded, "--concurrency", "4", env=sim_env(sim, JOB_COMPLETION_INDEX=str(k)))
        for k in range(2)
    ]
    try:
        _wait(lambda: len(_files_on_disk(out)) >= 3)
        res = run_cli("merge", out)
        assert res.returncode == 0, res.stderr
        early = read_metadata(out)
        assert 3 <= len(early) <= 12
        assert all((out / line["file_name"]).is_file() for line in early)
        again = run_cli(*sharded, env=sim_env(sim, JOB_COMPLETION_INDEX="0"))
        assert again.returncode == 2 and "already running" in again.stderr  # same K: refused
        live = _status(out)
        assert live["jobs"] == 16
        assert [s["state"] for s in live["shards"].values()] == ["unfinished", "unfinished"]
    finally:
        for proc in procs:
            proc.communicate(timeout=60)
    assert [proc.returncode for proc in procs] == [0, 0]
    assert run_cli("merge", out).returncode == 0
    assert len(read_metadata(out)) == 16 == len(_files_on_disk(out))


def test_merge_of_a_folder_without_shards_exits_2(tmp_path):
    res = run_cli("merge", tmp_path)
    assert res.returncode == 2 and "no shard-K-of-N folders" in res.stderr


class _Labels(HTMLParser):
    """The element ids of the jobs on a page, their card labels and their grid captions."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.cards: list[str] = []
        self.captions: list[str] = []
        self._into: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if (a.get("id") or "").startswith("job-"):
            self.ids.append(a["id"])
        classes = (a.get("class") or "").split()
        self._into = self.cards if "idx" in classes else self.captions if "cap" in classes else None

    def handle_data(self, data):
        if self._into is not None:
            self._into.append(data.split(" \u00b7 ")[0])  # a caption: "LABEL · field values"
            self._into = None


def test_the_merged_report_names_every_job_once(make_sim, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "jobs: [" + ", ".join(f"plain {i}" for i in range(8)) + "]\n"
        "sweep:\n"
        "  - prompt: 'A {s}'\n"
        "    vars: {s: [fox, owl, cat, heron]}\n"
        "    output_format: [png, jpeg]\n"
    )
    plain = [job.key for job in load_jobs(manifest).jobs if job.sweep is None]
    assert {shard_of(key, 2) for key in plain} == {0, 1}  # both shards number a plain job #1
    out = tmp_path / "run"
    _run_shards(manifest, out, 2, sim_env(make_sim(*FAST)))
    assert run_cli("merge", out).returncode == 0
    page = _Labels()
    page.feed((out / "report.html").read_text())
    assert len(page.cards) == 8 and len(set(page.cards)) == 8, page.cards
    assert len(page.captions) == 8 and len(set(page.captions)) == 8, page.captions
    labels = page.cards + page.captions
    assert all(label.startswith("shard-") for label in labels)  # e.g. "shard-1-of-2 #3"
    assert len(page.ids) == 8 and len(set(page.ids)) == 8  # the cards' anchors
    assert not (out / "images").exists()  # nothing copied


def test_the_merged_directory_loads_as_one_imagefolder_data_set(make_sim, tmp_path):
    prompts = [f"a lantern {i}" for i in range(6)]
    _, _, out = _two_shards(make_sim(*FAST), tmp_path, prompts)
    assert run_cli("merge", out).returncode == 0
    code = (
        "import datasets, json, sys\n"
        "ds = datasets.load_dataset('imagefolder', data_dir=sys.argv[1], cache_dir=sys.argv[2])\n"
        "print(json.dumps({s: sorted(d['prompt']) for s, d in ds.items()}))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code, str(out), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1]) == {"train": sorted(prompts)}  # each file once


def test_max_cost_total_gives_each_shard_its_share_of_the_budget(make_sim, tmp_path):
    model = "bytedance/seedream-5/lite/text-to-image"
    sim = make_sim(*FAST, "--price", f"{model}=0.1")
    manifest = write_manifest(tmp_path / "m.yaml", [f"priced job {i}" for i in range(8)])
    per_shard = [sum(shard_of(key, 2) == k for key in _keys(manifest)) for k in range(2)]
    assert min(per_shard) >= 2
    out = tmp_path / "run"
    for k in range(2):  # 0.25 / 2 = 0.125 each: one job of 0.1 fits, a second does not
        args = ("run", manifest, "--out", out, "--shard", f"{k}/2", "--max-cost-total", "0.25")
        res = run_cli(*args, "--no-progress", env=sim_env(sim))
        assert res.returncode == 1, res.stderr
    assert sim.stats()["submitted"] == 2 and sim.stats()["charged_usd"] <= 0.25
    status = _status(out)
    assert status["counts"] == {"done": 2, "pending": 6}
    assert abs(status["cost"]["spent_usd"] - 0.2) < 1e-9  # the shards' costs added up
    assert status["models"][model] == {"jobs": 8, "done": 2}


def _optioned(path: Path, options: str, prompts: list[str]) -> Path:
    path.write_text(f"options: {options}\njobs:\n" + "".join(f"  - {p}\n" for p in prompts))
    return path


def test_shards_and_a_total_budget_from_the_manifest_options(make_sim, tmp_path):
    model = "bytedance/seedream-5/lite/text-to-image"
    sim = make_sim(*FAST, "--price", f"{model}=0.1")
    prompts = [f"optioned job {i}" for i in range(8)]
    manifest = _optioned(tmp_path / "m.yaml", "{shards: 2, max_cost_total: 0.25}", prompts)
    per_shard = [sum(shard_of(key, 2) == k for key in _keys(manifest)) for k in range(2)]
    assert min(per_shard) >= 2
    out = tmp_path / "run"
    for k in range(2):  # as --shards 2 --max-cost-total 0.25: one job of 0.1 fits in 0.125
        env = sim_env(sim, JOB_COMPLETION_INDEX=str(k))
        res = run_cli("run", manifest, "--out", out, "--no-progress", env=env)
        assert res.returncode == 1, res.stderr
        assert f"shard {k} of 2: {per_shard[k]} of the 8 jobs" in res.stderr
        assert "budget: $0.125 for this shard" in res.stderr
    assert sim.stats()["submitted"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    # a resume of a shard keeps its share of the budget; a larger one carries on
    res = run_cli("resume", out / "shard-0-of-2", "--no-progress", env=sim_env(sim))
    assert res.returncode == 1 and sim.stats()["submitted"] == 2, res.stderr
    res = run_cli("resume", out / "shard-0-of-2", "--max-cost", "5", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    # the command line wins: --shard over shards:, --max-cost over max_cost_total:
    res = run_cli(
        "run", manifest, "--out", out, "--shard", "1/2", "--max-cost", "5", env=sim_env(sim)
    )
    assert res.returncode == 0 and "budget:" not in res.stderr, res.stderr
    status = _status(out)
    assert status["counts"] == {"done": 8} and sim.stats()["submitted"] == 8
    res = run_cli("run", manifest, "--out", out, "--shard", "0/3", env=sim_env(sim))
    assert res.returncode == 2 and "holds shards of 2" in res.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{shards: 0}", "options: shards must be a whole number of shards, at least 1, got 0"),
        ("{shards: two}", "options: shards must be a whole number of shards"),
        ("{shards: 2}", "options: shards 2: neither JOB_COMPLETION_INDEX"),
        ("{shard: 2/2}", "options: shard: shard 2 is not in 0..1"),
        ("{shard: x}", "options: shard must look like K/N (e.g. 0/4), got 'x'"),
        ("{shard: 0/2, shards: 2}", "options: give shard or shards, not both"),
        ("{shards: 2, max_cost_total: -1}", "options: max_cost_total must be 0 or more"),
        ("{shards: 2, max_cost_total: lots}", "options: max_cost_total must be a number"),
        ("{max_cost_total: 5}", "options: max_cost_total splits a budget across shards"),
        ("{shards: 2, max_cost: 1, max_cost_total: 2}", "options: give max_cost (per shard) or"),
    ],
)
def test_bad_shard_options_in_the_manifest_exit_2_naming_file_and_option(
    tmp_path, options, message
):
    manifest = _optioned(tmp_path / "m.yaml", options, ["a", "b"])
    out = tmp_path / "run"
    res = run_cli("run", manifest, "--out", out, "--simulate", "--no-progress")
    assert res.returncode == 2 and f"{manifest}:1: {message}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
