"""`--archive FILE` (issue 28 item 4, README "Never pay twice across runs"): runs on one
machine share a SQLite archive; a job it holds with its files is never submitted again, its
files come from the archived run; against the simulator over sockets, through the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import SIM_TOKEN, read_metadata, run_cli, sim_env, spawn_cli
from conftest import run_json as run
from conftest import status_json as status

import batch_runner

pytestmark = pytest.mark.timeout(120)

SEEDREAM = "bytedance/seedream-5/lite/text-to-image"


def write(path: Path, prompts: list[str]) -> Path:
    path.write_text("jobs:\n" + "".join(f"  - {json.dumps(p)}\n" for p in prompts))
    return path


def submitted_prompts(sim) -> list[str]:
    return sorted(job["body"]["prompt"] for job in sim.jobs())


def files_whole(run_dir: Path, n: int) -> list[dict]:
    """Every file once in metadata.jsonl and on disk under its name."""
    lines = read_metadata(run_dir)
    names = [line["file_name"] for line in lines]
    assert len(names) == len(set(names)) == n
    on_disk = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("images/*"))
    assert on_disk == sorted(names)
    return lines


@pytest.fixture
def sim(make_sim):
    return make_sim(
        "--latency", "0.05:0.15", "--image-scale", "0.02", "--price", f"{SEEDREAM}=0.03"
    )


OLD = ["a red fox", "an owl", "a heron", "a crane"]
NEW = ["a heron", "a crane", "a stork", "a swan"]  # half of them done by the first run


def test_a_second_run_submits_only_what_the_archive_lacks(sim, tmp_path):
    env, archive = sim_env(sim), tmp_path / "archive.db"
    first, second = tmp_path / "first", tmp_path / "second"
    code, _, _ = run(
        "run", write(tmp_path / "a.yaml", OLD), "--out", first, "--archive", archive, env=env
    )
    assert code == 0 and sim.stats()["submitted"] == 4

    code, summary, err = run(
        "run", write(tmp_path / "b.yaml", NEW), "--out", second, "--archive", archive, env=env
    )
    assert code == 0, err
    assert sim.stats()["submitted"] == 6  # the new half only
    assert submitted_prompts(sim) == sorted(OLD + ["a stork", "a swan"])
    assert "2 from the archive, $0.06 not spent" in err  # their recorded costs
    assert "estimated cost of the 2 jobs left to send: $0.06" in err  # only what is sent
    assert summary["from_archive"] == {
        "jobs": 2,
        "not_spent_usd": 0.06,
        "estimated": 0,
        "unknown": 0,
    }
    assert summary["cost"]["spent_usd"] == 0.06 and summary["cost"]["estimated_usd"] == 0.06

    lines = files_whole(second, 4)
    by_prompt = {line["prompt"]: line for line in lines}
    for prompt in ("a heron", "a crane"):
        line = by_prompt[prompt]
        assert line["archived_from"] == str(first.resolve())
        assert line["request_id"] is None
        source = next(x for x in read_metadata(first) if x["prompt"] == prompt)
        assert line["sha256"] == source["sha256"]
        # hard-linked, under the name this run gives it (its own index)
        assert os.path.samefile(second / line["file_name"], first / source["file_name"])
        assert line["file_name"] != source["file_name"]
    assert "archived_from" not in by_prompt["a stork"]

    done = status(second)
    assert done["counts"] == {"done": 4} and done["files"] == 4
    assert done["from_archive"]["jobs"] == 2
    text = run_cli("status", second).stdout
    assert "2 from the archive, $0.06 not spent" in text
    # the jobs the second run finished went into the archive too: a third run sends nothing
    code, _, _ = run(
        "run", write(tmp_path / "c.yaml", sorted(set(OLD + NEW))), "--out", tmp_path / "third",
        "--archive", archive, env=env,
    )  # fmt: skip
    assert code == 0 and sim.stats()["submitted"] == 6
    files_whole(tmp_path / "third", 6)


def test_a_changed_or_missing_archived_file_is_not_trusted(sim, tmp_path):
    env, archive = sim_env(sim), tmp_path / "archive.db"
    first = tmp_path / "first"
    manifest = write(tmp_path / "a.yaml", OLD)
    assert run("run", manifest, "--out", first, "--archive", archive, env=env)[0] == 0
    by_prompt = {line["prompt"]: first / line["file_name"] for line in read_metadata(first)}
    changed = by_prompt["a heron"]
    data = changed.read_bytes()
    changed.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other sha256
    by_prompt["an owl"].unlink()

    second = tmp_path / "second"
    code, summary, err = run("run", manifest, "--out", second, "--archive", archive, env=env)
    assert code == 0, err
    assert submitted_prompts(sim) == sorted(OLD + ["a heron", "an owl"])
    assert "2 from the archive" in err and "2 archived jobs not trusted" in err
    lines = files_whole(second, 4)
    fresh = {line["prompt"] for line in lines if "archived_from" not in line}
    assert fresh == {"a heron", "an owl"}
    assert not list(second.rglob("*.part"))
    # the jobs run again replaced the untrusted entries: a third run takes all four
    code, summary, _ = run(
        "run", manifest, "--out", tmp_path / "third", "--archive", archive, env=env
    )
    assert code == 0 and sim.stats()["submitted"] == 6
    assert summary["from_archive"]["jobs"] == 4


def test_max_cost_counts_only_what_will_be_submitted(sim, tmp_path):
    env, archive = sim_env(sim), tmp_path / "archive.db"
    assert (
        run(
            "run",
            write(tmp_path / "a.yaml", OLD),
            "--out",
            tmp_path / "a",
            "--archive",
            archive,
            env=env,
        )[0]
        == 0
    )
    # $0.07 covers the 2 new jobs ($0.06), not all 4 ($0.12)
    code, summary, err = run(
        "run", write(tmp_path / "b.yaml", NEW), "--out", tmp_path / "b", "--archive", archive,
        "--max-cost", "0.07", env=env,
    )  # fmt: skip
    assert code == 0, err
    assert "about 2 of 2 jobs fit" in err
    assert summary["counts"] == {"done": 4} and "left_by_budget" not in summary["cost"]


def test_resume_with_an_archive_and_the_directory_remembers_it(sim, tmp_path):
    env, archive = sim_env(sim), tmp_path / "archive.db"
    assert (
        run(
            "run",
            write(tmp_path / "a.yaml", OLD),
            "--out",
            tmp_path / "a",
            "--archive",
            archive,
            env=env,
        )[0]
        == 0
    )
    b = tmp_path / "b"
    # nothing fits a zero budget: every job waits (the archive is not given yet)
    code, summary, _ = run(
        "run", write(tmp_path / "b.yaml", NEW), "--out", b, "--max-cost", "0", env=env
    )
    assert code == 1 and summary["counts"] == {"pending": 4}

    code, summary, err = run("resume", b, "--archive", archive, "--no-max-cost", env=env)
    assert code == 0, err
    assert sim.stats()["submitted"] == 6 and summary["from_archive"]["jobs"] == 2
    files_whole(b, 4)

    # the directory remembers the archive: a taken job whose file is deleted here is linked
    # again by a plain resume, not submitted
    line = next(x for x in read_metadata(b) if "archived_from" in x)
    (b / line["file_name"]).unlink()
    code, summary, err = run("resume", b, env=env)
    assert code == 0, err
    assert sim.stats()["submitted"] == 6 and (b / line["file_name"]).is_file()
    files_whole(b, 4)

    # without the archive it is simply run again
    (b / line["file_name"]).unlink()
    code, summary, err = run("resume", b, "--no-archive", env=env)
    assert code == 0, err
    assert sim.stats()["submitted"] == 7 and summary["from_archive"]["jobs"] == 1
    lines = files_whole(b, 4)
    assert sum("archived_from" in x for x in lines) == 1


def test_several_runs_share_one_archive_at_once(sim, tmp_path):
    env, archive = sim_env(sim), tmp_path / "archive.db"
    prompts = [[f"job {n}-{i}" for i in range(24)] for n in range(3)]
    manifests = [write(tmp_path / f"m{n}.yaml", p) for n, p in enumerate(prompts)]
    procs = [
        spawn_cli(
            "run",
            m,
            "--out",
            tmp_path / m.stem,
            "--archive",
            archive,
            "--concurrency",
            "8",
            "--no-progress",
            env=env,
        )  # fmt: skip
        for m in manifests
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
    with sqlite3.connect(archive) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 72
    # one run of all of them: nothing is sent, every file is there
    every = write(tmp_path / "all.yaml", [p for part in prompts for p in part])
    code, summary, _ = run("run", every, "--out", tmp_path / "all", "--archive", archive, env=env)
    assert code == 0 and summary["from_archive"]["jobs"] == 72
    assert sim.stats()["submitted"] == 72
    files_whole(tmp_path / "all", 72)


def test_the_python_api_takes_archive(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", SIM_TOKEN)
    archive = tmp_path / "archive.db"
    first = batch_runner.run(OLD, out=tmp_path / "a", api_base=sim.base_url, archive=archive)
    assert first.exit_code == 0
    again = batch_runner.run(NEW, out=tmp_path / "b", api_base=sim.base_url, archive=str(archive))
    assert again.exit_code == 0 and again.summary["counts"] == {"done": 4}
    assert again.summary["from_archive"]["jobs"] == 2
    assert sim.stats()["submitted"] == 6


def test_what_is_not_an_archive_is_refused(sim, tmp_path):
    env = sim_env(sim)
    manifest = write(tmp_path / "a.yaml", OLD[:1])
    assert run("run", manifest, "--out", tmp_path / "a", env=env)[0] == 0
    cases = {
        tmp_path: "is a directory",
        tmp_path / "a" / "state.db": "not a batch_runner archive",
        tmp_path / "a.yaml": "not a batch_runner archive",
        tmp_path / "nowhere" / "x.db": "does not exist",
    }
    for path, words in cases.items():
        res = run_cli("run", manifest, "--out", tmp_path / "b", "--archive", path, env=env)
        assert res.returncode == 2, res.stderr
        assert f"--archive {path}: " in res.stderr and words in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    res = run_cli("resume", tmp_path / "a", "--archive", "x.db", "--no-archive", env=env)
    assert res.returncode == 2 and "not both" in res.stderr
    assert sim.stats()["submitted"] == 1


def _add_many(path: str, n: int, start: int) -> int:
    from batch_runner.store.archive import Archive, ArchivedFile, Entry

    written = 0
    with Archive.open(Path(path)) as archive:
        for i in range(start, start + n, 50):  # many small writes, interleaved with the others
            files = (ArchivedFile("images/x.png", "0" * 64, 1, "image"),)
            entries = [Entry(f"k{j}", f"/runs/{start}", "m", files) for j in range(i, i + 50)]
            written += archive.add(entries, replace=True)
            assert len(archive.lookup([f"k{i}", f"k{i + 49}"])) == 2
    return written


def test_processes_write_one_archive_at_once_without_lock_errors(tmp_path):
    import multiprocessing

    path = str(tmp_path / "archive.db")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = [pool.apply_async(_add_many, (path, 1000, n * 1000)) for n in range(4)]
        assert [r.get(timeout=60) for r in results] == [1000] * 4
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 4000
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
