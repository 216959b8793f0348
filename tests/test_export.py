"""Export rows (one per file, one per job without files) to CSV and JSON Lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from batch_runner.errors import UsageError
from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.report.export import export_rows, write_export

MODEL = "bytedance/seedream-5/lite/text-to-image"


def records() -> list[JobRecord]:
    two_files = JobRecord(
        key="a" * 16,
        index=2,
        model=MODEL,
        inputs={"prompt": 'A fox, in "snow"\nsecond line', "resolution": "2K"},
        state=JobState.DONE,
        meta={"split": "train"},
        vars={"subject": "fox"},
        request_ids=["old", "new"],
        files=[
            FileRecord("images/00002-a-fox.png", 1, "1" * 64, 100),
            FileRecord("images/00002-a-fox-2.png", 2, "2" * 64, 200),
        ],
    )
    failed = JobRecord(
        key="b" * 16,
        index=1,
        model=MODEL,
        inputs={"prompt": "An owl", "seed": 7, "tags": ["x", "y"], "index": "clash"},
        state=JobState.FAILED,
        reason="422001 invalid inputs",
        meta={"source": "csv"},
    )
    return [two_files, failed]


def test_rows_one_per_file_and_one_per_job_without_files():
    rows = list(export_rows(records()))
    assert [(r["index"], r["file_name"]) for r in rows] == [
        (1, None),
        (2, "images/00002-a-fox.png"),
        (2, "images/00002-a-fox-2.png"),
    ]
    failed, first, second = rows
    assert failed["state"] == "failed" and failed["reason"] == "422001 invalid inputs"
    assert failed["sha256"] is None and failed["bytes"] is None and failed["request_id"] is None
    assert failed["seed"] == 7 and failed["tags"] == ["x", "y"]
    assert failed["inputs.index"] == "clash"  # an input never overwrites a fixed column
    assert first["request_id"] == "new"  # the last attempt's id
    assert first["model"] == MODEL and first["key"] == "a" * 16
    assert first["meta.split"] == "train" and first["vars.subject"] == "fox"
    assert (first["sha256"], first["bytes"]) == ("1" * 64, 100)
    assert (second["sha256"], second["bytes"]) == ("2" * 64, 200)
    assert first["reason"] is None


def test_csv_columns_are_a_stable_union(tmp_path: Path):
    out = tmp_path / "export.csv"
    assert write_export(records(), out, "csv") == 3
    with open(out, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        header = reader.fieldnames
    assert header == [
        "file_name", "key", "index", "state", "request_id", "model", "media_type",
        "prompt", "seed", "tags", "inputs.index", "resolution",
        "meta.source", "meta.split", "vars.subject",
        "sha256", "bytes", "job_cost_usd", "reason", "mark",
    ]  # fmt: skip
    failed, first, _ = rows
    assert failed["file_name"] == "" and failed["bytes"] == "" and failed["resolution"] == ""
    assert (failed["media_type"], first["media_type"]) == ("", "image")
    assert failed["tags"] == '["x", "y"]'
    assert first["prompt"] == 'A fox, in "snow"\nsecond line'  # quoting round-trips
    assert first["bytes"] == "100" and first["meta.source"] == ""
    # the same records give the same file
    write_export(records(), tmp_path / "again.csv", "csv")
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()


def test_jsonl_rows(tmp_path: Path):
    out = tmp_path / "export.jsonl"
    assert write_export(records(), out, "jsonl") == 3
    lines = out.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows == [json.loads(json.dumps(r)) for r in export_rows(records())]
    assert rows[0]["tags"] == ["x", "y"] and rows[0]["file_name"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.jsonl"]  # no temp file left


def test_empty_export_and_bad_format(tmp_path: Path):
    assert write_export([], tmp_path / "e.csv", "csv") == 0
    header = (tmp_path / "e.csv").read_text(encoding="utf-8").strip()
    header_cells = "file_name,key,index,state,request_id,model,media_type,sha256,bytes,job_cost_usd"
    assert header == header_cells + ",reason,mark"
    with pytest.raises(UsageError, match="xlsx"):
        write_export(records(), tmp_path / "e.xlsx", "xlsx")
    assert not (tmp_path / "e.xlsx").exists()


def test_existing_file_is_replaced_whole(tmp_path: Path):
    out = tmp_path / "export.jsonl"
    out.write_text("old\n" * 100, encoding="utf-8")
    write_export(records(), out, "jsonl")
    assert "old" not in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_from_the_state_streams_the_same_rows(tmp_path: Path, fmt: str):
    from batch_runner.jobs import JobSpec
    from batch_runner.store.state import StateStore

    store = StateStore.open(tmp_path / "run", create=True)
    try:
        recs = sorted(records(), key=lambda r: r.index)
        store.sync_jobs(JobSpec(r.model, r.inputs, meta=r.meta, vars=r.vars) for r in recs)
        for r in recs:
            for n, rid in enumerate(r.request_ids, 1):
                store.record_request_id(r.index, JobState.QUEUED, n, rid)
            for f in r.files:
                store.record_file(r.index, f)
            store.set_state(r.index, r.state, r.reason)
        store.flush()
        a = write_export(store, tmp_path / f"a.{fmt}", fmt)
        b = write_export(store.jobs(), tmp_path / f"b.{fmt}", fmt)
    finally:
        store.close()
    assert a == b == 3
    assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
