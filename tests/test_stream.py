"""Manifests of a million jobs (issue 30 item 4): the streamed expansion (a JobStream, made
again on each pass) gives the same jobs, in the same order and shards, as the list; the .txt
reader reads a line at a time; the global checks (copy numbers, name clashes) still hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import CLI

from batch_runner.digests import DigestMap, digest, key_digest
from batch_runner.errors import ManifestError
from batch_runner.manifest.load import load_jobs
from batch_runner.manifest.stream import JobStream, select
from batch_runner.shards import Shard

YAML = """\
model: bytedance/seedream-5/lite/text-to-image
defaults: {resolution: "2048x2048 (1:1)"}
repeat: 2
jobs:
  - a red fox
  - prompt: an owl
    meta: {split: train}
  - a red fox
  - 'a {small|large} boat'
sweep:
  - prompt: "{animal} at dusk"
    vars: {animal: [cat, dog, eel]}
    exclude: [{animal: dog}]
"""


def rows(jobs) -> list[tuple]:
    return [(j.key, j.model, j.inputs, j.copy, j.meta, j.vars, j.source, j.sweep) for j in jobs]


@pytest.mark.parametrize("suffix", [".yaml", ".txt"])
def test_a_stream_gives_the_jobs_of_the_list_in_order_and_again(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    if suffix == ".txt":
        path.write_text("a red fox\n\n# a comment\n  an owl  \na red fox\n{cat|dog} in rain\n")
    else:
        path.write_text(YAML)
    listed = load_jobs(path, stream=False)
    streamed = load_jobs(path, stream=True)
    assert isinstance(streamed.jobs, JobStream) and isinstance(listed.jobs, list)
    assert rows(streamed.jobs) == rows(listed.jobs) == rows(streamed.jobs)  # twice: the same
    assert len(streamed.jobs) == len(listed.jobs)
    assert streamed.model_counts() == listed.model_counts()
    assert streamed.sweep_counts == listed.sweep_counts
    assert streamed.warnings == listed.warnings
    assert rows(streamed.jobs[:3]) == rows(listed.jobs[:3])
    assert rows([streamed.jobs[-1]]) == rows([listed.jobs[-1]])
    for shard in (Shard(0, 3), Shard(2, 3)):
        mine = [j.key for j in listed.jobs if shard.holds(j.key)]
        assert [j.key for j in select(streamed.jobs, shard.holds_job)] == mine  # one pass
        kept = load_jobs(path, stream=True, select=shard.holds_job)  # kept while checked
        assert rows(kept.jobs.select(shard.holds_job)) == rows(select(listed.jobs, shard.holds_job))
        assert len(kept.jobs) == len(listed.jobs)
    if suffix == ".txt":  # lines as written, blank and # lines skipped, duplicates numbered
        assert [(j.inputs["prompt"], j.source.line, j.copy) for j in listed.jobs] == [
            ("a red fox", 1, 0),
            ("an owl", 4, 0),
            ("a red fox", 5, 1),
            ("cat in rain", 6, 0),
            ("dog in rain", 6, 0),
        ]


@pytest.mark.parametrize("stream", [False, True])
def test_clashing_output_names_are_reported_streamed_or_not(tmp_path, stream):
    path = tmp_path / "m.txt"
    path.write_text("a red fox\nan owl\nA RED FOX!\n")
    with pytest.raises(ManifestError) as err:
        load_jobs(path, name_template="{slug}.{ext}", stream=stream)
    (problem,) = err.value.problems
    assert problem.line == 3
    assert "output name 'a-red-fox.png' is also given to the job from line 1" in problem.message


def test_a_txt_manifest_edited_between_passes_is_refused(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("a red fox\nan owl\n")
    streamed = load_jobs(path, stream=True)
    path.write_text("a red fox\nan eel\n")
    with pytest.raises(ManifestError, match="changed while it was being read"):
        list(streamed.jobs)


def test_a_txt_manifest_names_the_line_of_bad_bytes(tmp_path):
    path = tmp_path / "m.txt"
    path.write_bytes(b"a red fox\nan \xff owl\n")
    with pytest.raises(ManifestError) as err:
        load_jobs(path)
    assert err.value.problems[0].line == 2
    assert "not UTF-8 text (byte 0xff)" in err.value.problems[0].message


def test_digest_map_counts_and_grows():
    table = DigestMap(capacity=2)
    keys = [f"{i:016x}" for i in range(1, 5000)]
    assert [table.add(key_digest(k), 2) for k in keys] == [0] * len(keys)
    assert table.add(key_digest(keys[7]), 1) == 2 and table.get(key_digest(keys[7])) == 3
    assert len(table) == len(keys) and table.get(digest("absent")) is None
    assert table.setdefault(digest("x"), 5) == (5, False) and table.setdefault(digest("x"), 9) == (
        5,
        True,
    )


# Runs a command and prints its peak RSS in KB. A child's ru_maxrss starts at the high-water
# mark of the process it was forked from (Linux carries it over exec), so the command is
# started from this small interpreter, not from the test process (itself 100+ MB by now).
PEAK = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(proc.returncode)
"""


def test_validate_of_100k_lines_stays_small(tmp_path):
    """The whole manifest is never held: 100,000 jobs validate in far less memory than they
    took as objects (~150 MB before streaming; ~50 MB now, mostly the interpreter)."""
    path = tmp_path / "m.txt"
    with path.open("w") as f:
        for i in range(100_000):
            f.write(f"a red fox #{i:06d}, soft light\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    cmd = [CLI, "validate", str(path), "--offline", "--json", "--max-jobs", "200000"]
    res = subprocess.run(
        [sys.executable, "-c", PEAK, *cmd], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["jobs"] == 100_000
    peak_mb = int(res.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < 100, f"{peak_mb:.0f} MB"


def test_max_jobs_still_refuses_a_big_txt(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(30)))
    with pytest.raises(ManifestError) as err:
        load_jobs(path, max_jobs=20)
    assert err.value.problems[0].message == (
        "the manifest describes 30 jobs (30 entries), more than the limit of 20; raise the "
        "limit with --max-jobs N if you mean it (e.g. --max-jobs 30)"
    )


def test_validate_prices_a_streamed_manifest_in_its_checking_pass(sim, tmp_path, monkeypatch):
    """`validate` of a streamed manifest makes no pass of its own to price the jobs (they are
    priced as they are checked), and says what it says of the same jobs as a list."""
    from conftest import sim_env

    from batch_runner.cli.main import main

    path = tmp_path / "m.txt"
    path.write_text("".join(f"a fox #{i}\n" for i in range(12)) + "{cat|dog} in rain\n")
    env = sim_env(sim)
    for name in ("RUNCOMFY_API_TOKEN", "RUNCOMFY_API_BASE"):
        monkeypatch.setenv(name, env[name])

    def validate(capsys_out: list[str]) -> dict:
        assert main(["validate", str(path), "--json", "--max-cost", "0.1"]) == 0
        return json.loads(capsys_out.pop())

    outs: list[str] = []
    monkeypatch.setattr(
        "batch_runner.cli.validate.print_json", lambda o: outs.append(json.dumps(o))
    )
    listed = validate(outs)
    passes: list[int] = []
    again = JobStream.__iter__
    monkeypatch.setattr(JobStream, "__iter__", lambda self: passes.append(1) or again(self))
    monkeypatch.setattr("batch_runner.manifest.load.STREAM_ABOVE", 5)
    streamed = validate(outs)
    assert listed["estimated_cost_usd"] and listed["jobs"] == 14
    assert streamed == listed and passes == []
