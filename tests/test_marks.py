"""Keep/reject marks (issue 29): stored per job key in state.db (a migration), counted in
`status`, shown in report.html and metadata.jsonl (`mark`) once the run directory is free,
and `export --marked keep|reject` keeps only those outputs, in every format."""

from __future__ import annotations

import csv
import json
import sqlite3
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import read_metadata, run_cli, sim_env, write_manifest

from batch_runner.errors import UsageError
from batch_runner.store.marks import MARKS_VERSION, set_mark
from batch_runner.store.migrations import SCHEMA_VERSION
from batch_runner.store.state import STATE_FILE, StateStore

PROMPTS = ["a red fox", "an owl", "a lighthouse", "a paper boat", "a storm"]


@pytest.fixture
def marked_run(sim, tmp_path: Path) -> tuple[Path, dict, list[str]]:
    """A finished 5-job run; jobs 1 and 2 marked keep, job 3 reject, job 4 marked then
    cleared."""
    out = tmp_path / "run"
    manifest = write_manifest(tmp_path / "m.yaml", PROMPTS, output_format="png")
    res = run_cli("run", manifest, "--out", out, "--no-progress", env=sim_env(sim))
    assert res.returncode == 0, res.stderr
    store = StateStore.open(out, readonly=True)
    keys = [job.key for job in store.jobs(with_files=False)]  # in index order
    store.close()
    db = out / STATE_FILE
    assert set_mark(db, keys[0], "keep") and set_mark(db, keys[1], "keep")
    assert set_mark(db, keys[2], "reject")
    assert set_mark(db, keys[3], "reject") and set_mark(db, keys[3], None)
    return out, sim_env(sim), keys


def test_marks_counted_in_status_and_written_by_the_next_run(marked_run):
    out, env, keys = marked_run
    summary = json.loads(run_cli("status", out, "--json", env=env).stdout)
    assert summary["marks"] == {"keep": 2, "reject": 1}
    assert "marks: keep 2, reject 1" in run_cli("status", out, env=env).stdout
    # the marks were set while no run held the directory: the next run's end writes them
    assert all("mark" not in line for line in read_metadata(out))
    res = run_cli("resume", out, "--no-progress", env=env)
    assert res.returncode == 0, res.stderr
    marks = {line["key"]: line.get("mark") for line in read_metadata(out)}
    assert marks == {
        keys[0]: "keep",
        keys[1]: "keep",
        keys[2]: "reject",
        keys[3]: None,
        keys[4]: None,
    }
    html = (out / "report.html").read_text()
    assert html.count('class="badge m-keep"') == 2 and html.count('class="badge m-reject"') == 1
    # written once: a later run with no new marks leaves metadata.jsonl alone
    before = (out / "metadata.jsonl").stat().st_mtime_ns
    assert run_cli("resume", out, "--no-progress", env=env).returncode == 0
    assert (out / "metadata.jsonl").stat().st_mtime_ns == before


def test_export_marked_in_every_format(marked_run, tmp_path: Path):
    out, env, keys = marked_run
    kept = {keys[0], keys[1]}

    res = run_cli("export", out, "--format", "csv", "--marked", "keep", "--out", tmp_path / "k.csv")
    assert res.returncode == 0, res.stderr
    assert "(2 rows marked keep)" in res.stdout
    with open(tmp_path / "k.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["key"] for r in rows} == kept and {r["mark"] for r in rows} == {"keep"}

    res = run_cli(
        "export", out, "--format", "jsonl", "--marked", "reject", "--out", tmp_path / "r.jsonl"
    )
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["key"], r["mark"]) for r in rows] == [(keys[2], "reject")]

    res = run_cli(
        "export", out, "--format", "parquet", "--marked", "keep", "--out", tmp_path / "k.parquet"
    )
    assert res.returncode == 0, res.stderr
    table = pq.read_table(tmp_path / "k.parquet")
    assert set(table.column("key").to_pylist()) == kept

    wds = tmp_path / "wds"
    res = run_cli("export", out, "--format", "webdataset", "--marked", "keep", "--out", wds)
    assert res.returncode == 0, res.stderr
    with tarfile.open(wds / "00000.tar") as tar:
        samples = [
            json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")
        ]
    assert {s["key"] for s in samples} == kept and {s["mark"] for s in samples} == {"keep"}
    stats = json.loads((wds / "_stats.json").read_text())
    assert stats["marked"] == "keep" and stats["not_marked"] == 3 and stats["samples"] == 2

    # without --marked everything is exported, marks as a column
    res = run_cli("export", out, "--format", "jsonl", "--out", tmp_path / "all.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["mark"] for r in rows] == ["keep", "keep", "reject", None, None]


def test_bad_marks_and_unknown_keys(marked_run):
    out, _, keys = marked_run
    with pytest.raises(UsageError, match="keep, reject or null"):
        set_mark(out / STATE_FILE, keys[0], "maybe")
    assert set_mark(out / STATE_FILE, "no-such-key", "keep") is False
    res = run_cli("export", out, "--marked", "maybe")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_an_older_state_file_gains_the_table_when_marked(marked_run):
    out, _, keys = marked_run
    db = out / STATE_FILE
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE marks")
    conn.execute(f"PRAGMA user_version = {MARKS_VERSION - 1}")
    conn.commit()
    conn.close()
    store = StateStore.open(out, readonly=True)  # read as it is: no marks, no error
    try:
        assert "marks" not in store.summary() and store.jobs()[0].mark is None
    finally:
        store.close()
    assert set_mark(db, keys[4], "keep")
    store = StateStore.open(out, readonly=True)
    try:
        assert store.version == SCHEMA_VERSION and store.summary()["marks"] == {
            "keep": 1,
            "reject": 0,
        }
    finally:
        store.close()
