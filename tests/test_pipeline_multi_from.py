"""Several `{from:}` fields in one stage (CONTRACT §3 Pipelines; README "Pipelines"): a model
taking an audio and the still it was made from (stills -> voice -> talking), a first-last-frame
model taking two files of one parent (their product; `first: true` pins one), fields naming
unrelated stages refused up front, and the URLs of every field refreshed when they died."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import conftest
import pytest
from conftest import read_metadata, run_cli, sim_env, status_json
from pipeline_manifests import urls_of, wait_until_dead

pytestmark = pytest.mark.timeout(120)

T2I = "bytedance/seedream-5/lite/text-to-image"
T2A = "bytedance/seed-audio-1.0/text-to-audio"  # speech, optionally shown an image
A2V = "lightricks/ltx-2.5/audio-to-video/fast"  # a sound and an image make a clip
FLF = "blackforestlabs/flux-3/first-last-frame-to-video/draft"

# with --seed 0 the simulator's first job returns 2 images (sequential, max_images 2)
STILLS = f"""\
stages:
  stills:
    model: {T2I}
    jobs:
      - prompt: "A news anchor at her desk"
        sequential_image_generation: auto
        max_images: 2
        meta: {{line: "Good evening"}}
      - prompt: "A pirate on a ship"
        meta: {{line: "Arr"}}
  voice:
    model: {T2A}
    jobs:
      - prompt: "{{stills.line}}"
        image_url: {{from: stills}}
"""
TALKING = f"""\
  talking:
    model: {A2V}
    jobs:
      - audio_url: {{from: voice}}
        image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, speaking"
"""
MORPH = f"""\
stages:
  stills:
    model: {T2I}
    jobs:
      - prompt: "A fox in the snow, two moments"
        sequential_image_generation: auto
        max_images: 2
  morph:
    model: {FLF}
    jobs:
      - start_image_url: {{from: stills}}
        end_image_url: {{from: stills}}
        prompt: "{{stills.prompt}}, morphing"
  pinned:
    model: {FLF}
    jobs:
      - start_image_url: {{from: stills, first: true}}
        end_image_url: {{from: stills}}
        prompt: "From the first frame"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_json(*args, env) -> tuple[int, dict, str]:
    return conftest.run_json(*args, "--retries", "0", "--concurrency", "1", env=env)


def by_stage(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for line in read_metadata(out):
        found.setdefault(line["stage"], []).append(line)
    return found


def test_a_stage_takes_its_parents_audio_and_the_still_the_chain_came_from(make_sim, tmp_path):
    sim = make_sim("--seed", "0", "--latency", "0.02", "--image-scale", "0.02")
    manifest = write(tmp_path, STILLS + TALKING)
    res = run_cli("validate", manifest, "--json", "--offline")
    assert res.returncode == 0, res.stderr
    stages = json.loads(res.stdout)["stages"]
    # 3 still files at most, a voice each, one talking clip per voice (the still is along
    # the chain: not an axis)
    assert [stages[s]["max_jobs"] for s in ("stills", "voice", "talking")] == [2, 3, 3]

    out = tmp_path / "run"
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    lines = by_stage(out)
    assert len(lines["stills"]) == 3  # the anchor's 2 images and the pirate's
    assert len(lines["voice"]) == len(lines["talking"]) == 3
    voice_of = {line["file_name"]: line for line in lines["voice"]}
    for clip in lines["talking"]:
        voice = voice_of[clip["parent_file"]]  # the parent is the deepest stage named
        assert clip["parent_key"] == voice["key"]
        assert clip["audio_url"] != voice["image_url"]
        assert clip["image_url"] == voice["image_url"]  # the still that voice was made of
        still = voice["parent_file"]
        assert clip["prompt"].startswith("A pirate" if "pirate" in still else "A news anchor")
    assert len({clip["image_url"] for clip in lines["talking"]}) == 3
    stats = sim.stats()
    assert stats["submitted"] == 2 + 3 + 3
    assert stats["input_urls_own"] == 3 + 2 * 3 and stats["input_data_uris"] == 0
    assert status_json(out)["stages"]["talking"]["done"] == 3
    # the children's keys derive from their parents: running again sends nothing
    code, _, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0 and sim.stats()["submitted"] == stats["submitted"], err


def test_two_fields_from_one_stage_make_the_product_of_its_files(make_sim, tmp_path):
    sim = make_sim("--seed", "0", "--latency", "0.02", "--image-scale", "0.02")
    manifest = write(tmp_path, MORPH)
    res = run_cli("validate", manifest, "--json", "--offline")
    assert res.returncode == 0, res.stderr
    stages = json.loads(res.stdout)["stages"]
    assert stages["morph"]["max_jobs"] == 4 and stages["pinned"]["max_jobs"] == 2

    out = tmp_path / "run"
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    lines = by_stage(out)
    assert len(lines["stills"]) == 2, "the simulator's seed 0 no longer makes 2 images"
    with sqlite3.connect(out / "state.db") as db:
        url_of = {name: url for name, url in db.execute("SELECT file_name, url FROM files")}
    stills = [url_of[line["file_name"]] for line in sorted(lines["stills"], key=lambda x: x["k"])]
    pairs = sorted((c["start_image_url"], c["end_image_url"]) for c in lines["morph"])
    assert pairs == sorted((a, b) for a in stills for b in stills)
    for clip in lines["morph"]:  # lineage names the parent and the first field's file
        assert url_of[clip["parent_file"]] == clip["start_image_url"]
    pinned = sorted(c["end_image_url"] for c in lines["pinned"])
    assert pinned == sorted(stills) and {c["start_image_url"] for c in lines["pinned"]} == {
        stills[0]
    }
    keys = [line["key"] for line in lines["morph"] + lines["pinned"]]
    assert len(keys) == len(set(keys)) == 4 + 2
    assert sim.stats()["submitted"] == 1 + 4 + 2
    code, _, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0 and sim.stats()["submitted"] == 7, err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # two unrelated branches: which job of each would be paired is undefined
        (
            f"  clips:\n    model: {FLF}\n    jobs:\n"
            "      - start_image_url: {from: stills}\n"
            "        end_image_url: {from: other}\n        prompt: x\n",
            "p.yaml:11: stage clips: start_image_url: {from: stills} and {from: other} are not "
            "on one chain (other is a first stage)",
        ),
        # every field's kind is checked against what its own stage makes
        (
            f"  voice:\n    model: {T2A}\n    jobs: [{{prompt: hi, image_url: {{from: stills}}}}]\n"
            f"  clips:\n    model: {FLF}\n    jobs:\n"
            "      - start_image_url: {from: stills}\n"
            "        end_image_url: {from: voice}\n        prompt: x\n",
            f"p.yaml:15: stage clips: model {FLF}: end_image_url: takes image files, but stage "
            "voice makes audio files",
        ),
        # the jobs of a stage take the same {from:} fields
        (
            f"  clips:\n    model: {FLF}\n    jobs:\n"
            "      - {start_image_url: {from: stills}, end_image_url: {from: stills}, prompt: x}\n"
            "      - {start_image_url: {from: other}, end_image_url: {from: stills}, prompt: y}\n",
            "p.yaml:12: stage clips: start_image_url: a stage's jobs take the same {from:} "
            "fields (line 11: {from: stills})",
        ),
    ],
)
def test_from_fields_off_one_chain_are_refused_naming_the_line(tmp_path, extra, expected):
    text = (
        f"stages:\n  stills:\n    model: {T2I}\n    jobs: [A fox]\n"
        f"  other:\n    model: {T2I}\n    jobs: [An owl]\n" + extra
    )
    res = run_cli("validate", write(tmp_path, text), "--offline")
    assert res.returncode == 2, res.stdout
    assert expected in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_dead_urls_of_both_fields_are_refreshed_from_their_own_jobs(make_sim, tmp_path):
    """The still and the voice run first; once their URLs died, the talking stage is added:
    each clip's audio URL is refreshed from its voice's /result, its image URL from the
    still's (two stages up), in one refused submit."""
    sim = make_sim("--seed", "0", "--latency", "0.02", "--url-ttl", "1", "--image-scale", "0.02")
    manifest, out = write(tmp_path, STILLS), tmp_path / "run"
    code, _, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    urls = urls_of(out / "state.db")
    wait_until_dead(urls)
    manifest.write_text(STILLS + TALKING, encoding="utf-8")
    before = sim.stats()
    code, summary, err = run_json("run", manifest, "--out", out, env=sim_env(sim))
    assert code == 0, err
    assert summary["stages"]["talking"]["done"] == 3
    stats = sim.stats()
    assert stats["submitted"] - before["submitted"] == 3
    assert stats["requests"]["submit"] - before["requests"]["submit"] == 3 + 3  # one refusal each
    with sqlite3.connect(out / "state.db") as db:
        fresh = {name: url for name, url in db.execute("SELECT file_name, url FROM files")}
    voice_of = {line["file_name"]: line for line in by_stage(out)["voice"]}
    for clip in by_stage(out)["talking"]:
        assert clip["audio_url"] == fresh[clip["parent_file"]]
        assert clip["image_url"] == fresh[voice_of[clip["parent_file"]]["parent_file"]]
