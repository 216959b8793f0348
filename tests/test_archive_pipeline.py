"""`--archive FILE` with a pipeline (README "Never pay twice across runs", "Pipelines"): an
archived job of a stage lands where a download of it would (RUN_DIR/STAGE/images|videos/, the
same name, `{STAGE.NAME}` read from its ancestors); the children of archived parents are made
in the same run (taken from the archive too where it holds them, else sent the archived
parent's URL); an archive entry from before URLs were kept gets one from the parent's
/result, or sends the parent's file inline, or fails the child saying why. Against the
simulator over sockets, through the CLI."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import conftest
import pytest
from conftest import read_metadata, sim_env

pytestmark = pytest.mark.timeout(120)

T2I = "bytedance/seedream-5/lite/text-to-image"
I2V = "blackforestlabs/flux-3/image-to-video/draft"
NAMES = "{stills.animal}-{index}[-{k}].{ext}"  # ancestors' meta in a child's name


def pipeline(camera: str) -> str:
    return f"""\
stages:
  stills:
    model: {T2I}
    jobs:
      - prompt: "A red fox in fresh snow"
        meta: {{animal: fox}}
      - prompt: "An owl at dusk"
        meta: {{animal: owl}}
  clips:
    model: {I2V}
    jobs:
      - image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, the camera {camera}"
"""


@pytest.fixture
def sim(make_sim):
    return make_sim("--latency", "0.05:0.1", "--image-scale", "0.02")


def run(sim, tmp_path: Path, out: str, camera: str, archive: Path, *more: str):
    manifest = tmp_path / f"{camera.replace(' ', '-')}.yaml"
    manifest.write_text(pipeline(camera), encoding="utf-8")
    args = ("run", manifest, "--out", tmp_path / out, "--archive", archive, "--retries", "0")
    return conftest.run_json(*args, "--name-template", NAMES, *more, env=sim_env(sim))


def counts(sim) -> tuple[int, int, int]:
    stats = sim.stats()
    return stats["submitted"], stats["input_urls_own"], stats["input_data_uris"]


def lines_by_name(run_dir: Path) -> dict[str, dict]:
    return {line["file_name"]: line for line in read_metadata(run_dir)}


def old_archive(archive: Path, copy: Path, *, request_ids: bool) -> Path:
    """A copy of `archive` as a release before URLs were kept wrote it (and, without
    `request_ids`, one whose entries name no request either)."""
    with sqlite3.connect(archive) as db:
        db.execute("VACUUM INTO ?", (str(copy),))
    with sqlite3.connect(copy) as db:
        for key, files in db.execute("SELECT key, files FROM jobs").fetchall():
            old = [{k: v for k, v in f.items() if k != "url"} for f in json.loads(files)]
            db.execute("UPDATE jobs SET files = ? WHERE key = ?", (json.dumps(old), key))
        if not request_ids:
            db.execute("UPDATE jobs SET request_id = NULL")
    return copy


def test_archived_stages_land_alike_and_new_children_run_in_the_same_run(sim, tmp_path):
    archive = tmp_path / "archive.db"
    code, _, err = run(sim, tmp_path, "a", "pulls back", archive)
    assert code == 0, err
    assert counts(sim) == (4, 2, 0)

    code, summary, err = run(sim, tmp_path, "b", "pulls back", archive)
    assert code == 0, err
    assert counts(sim) == (4, 2, 0)  # nothing sent for either stage
    assert "4 from the archive" in err
    assert {s: v["done"] for s, v in summary["stages"].items()} == {"stills": 2, "clips": 2}
    first, second = lines_by_name(tmp_path / "a"), lines_by_name(tmp_path / "b")
    assert (
        sorted(second)
        == sorted(first)
        == [
            "clips/videos/fox-3.mp4",
            "clips/videos/owl-4.mp4",
            "stills/images/fox-1.png",
            "stills/images/owl-2.png",
        ]
    )
    for name, line in second.items():
        assert os.path.samefile(tmp_path / "b" / name, tmp_path / "a" / name)
        assert line["archived_from"] == str((tmp_path / "a").resolve())
        want = first[name]
        for field in ("key", "stage", "parent_key", "parent_file", "sha256"):
            assert line[field] == want[field], field
    for line in second.values():
        if line["stage"] == "clips":
            assert second[line["parent_file"]]["key"] == line["parent_key"]

    # a new second stage over the archived stills: only the new clips are sent, in this one
    # run, each given the URL its archived parent's request returned
    with sqlite3.connect(tmp_path / "a" / "state.db") as db:
        urls = {name: url for name, url in db.execute("SELECT file_name, url FROM files")}
    code, summary, err = run(sim, tmp_path, "c", "turns", archive)
    assert code == 0, err
    assert counts(sim) == (4 + 2, 2 + 2, 0)
    assert summary["stages"]["clips"]["counts"] == {"done": 2}
    assert "2 from the archive" in err
    clips = [line for line in read_metadata(tmp_path / "c") if line["stage"] == "clips"]
    assert sorted(line["image_url"] for line in clips) == sorted(
        urls[f"stills/images/{animal}.png"] for animal in ("fox-1", "owl-2")
    )
    assert all("archived_from" not in line for line in clips)


def test_an_archive_from_before_urls_were_kept_still_makes_children(sim, tmp_path):
    archive = tmp_path / "archive.db"
    assert run(sim, tmp_path, "a", "pulls back", archive)[0] == 0

    # entries with request ids: the URL is asked from the parent's /result
    older = old_archive(archive, tmp_path / "older.db", request_ids=True)
    code, summary, err = run(sim, tmp_path, "d", "turns", older)
    assert code == 0, err
    assert counts(sim) == (4 + 2, 2 + 2, 0)
    assert summary["stages"]["clips"]["counts"] == {"done": 2}

    # no request ids either: the parent's file inline, and over --max-inline-mb the child
    # fails saying why (nothing sent); a later round with room sends it
    oldest = old_archive(archive, tmp_path / "oldest.db", request_ids=False)
    code, summary, err = run(sim, tmp_path, "e", "zooms", oldest, "--max-inline-mb", "0.000001")
    assert code == 1, err
    assert counts(sim)[0] == 6
    assert summary["stages"]["clips"]["counts"] == {"failed": 2}
    for failure in summary["failures"]:
        assert failure["reason"].startswith(
            "image_url: its parent's file URL was not kept, the parent's request id was not "
            "kept either and its file stills/images/"
        )
        assert "--max-inline-mb" in failure["reason"]
    args = ("resume", tmp_path / "e", "--retry-failed", "--max-inline-mb", "10")
    code, summary, err = conftest.run_json(*args, env=sim_env(sim))
    assert code == 0, err
    assert counts(sim) == (6 + 2, 4, 2)
    for line in read_metadata(tmp_path / "e"):
        if line["stage"] == "clips":
            assert line["image_url"] == str((tmp_path / "e" / line["parent_file"]).resolve())
