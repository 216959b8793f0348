"""Every failure a user can cause: one clear message with file:line, exit 2, nothing sent."""

from __future__ import annotations

import pytest
from conftest import run_cli, sim_env, write_manifest

BAD = {
    "syntax.yaml": (b"jobs:\n  - prompt: [unclosed\n", ":2"),
    "noprompt.yaml": (b"jobs:\n  - resolution: 2K\n", ":2"),
    "enum.yaml": (b"jobs:\n  - prompt: fox\n    resolution: 4K\n", "allowed"),
    "column.csv": (b"prompt,colour\nfox,red\n", "colour"),
    "empty.yaml": (b"", "empty"),
    "latin1.csv": (b"prompt\ncaf\xe9 au lait\n", ":2"),
    "bad.jsonl": (b'{"prompt": "ok"}\n{not json\n', ":2"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_manifest_exits_2_and_sends_nothing(sim, tmp_path, name):
    data, needle = BAD[name]
    path = tmp_path / name
    path.write_bytes(data)
    for command in (["validate", path], ["run", path, "--out", tmp_path / "run"]):
        res = run_cli(*command, env=sim_env(sim))
        assert res.returncode == 2, (command, res.stderr)
        assert "Traceback" not in res.stderr
        assert name in res.stderr and needle in res.stderr, res.stderr
    assert sim.stats()["requests"].get("submit", 0) == 0


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "jobs:\n  - prompt: a\n    resolution: 4K\n  - resolution: 2K\n"
        "  - prompt: c\n    output_format: gif\n"
    )
    res = run_cli("validate", path)
    assert res.returncode == 2
    assert ":3" in res.stderr and ":4" in res.stderr and ":6" in res.stderr


def test_validate_prints_count_and_preview(tmp_path):
    path = write_manifest(tmp_path / "ok.yaml", ["a fox", "an owl", "a heron"])
    res = run_cli("validate", path)
    assert res.returncode == 0, res.stderr
    assert "3 jobs" in res.stdout and "a fox" in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["frobnicate"],
        ["run", "x.yaml", "--concurrency", "zero"],
        ["status", "/nonexistent/dir"],
        ["resume", "/nonexistent/dir"],
    ],
)
def test_bad_usage_exits_2_without_traceback(args):
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip()


def test_missing_manifest_and_directory(tmp_path):
    for path in (tmp_path / "missing.yaml", tmp_path):
        res = run_cli("validate", path)
        assert res.returncode == 2 and str(path) in res.stderr and "Traceback" not in res.stderr


def test_bad_set_override(tmp_path):
    path = write_manifest(tmp_path / "ok.yaml", ["a fox"])
    res = run_cli("validate", path, "--set", "resolution=8K")
    assert res.returncode == 2 and "8K" in res.stderr
    res = run_cli("validate", path, "--set", "novalue")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_resume_with_a_template_field_the_jobs_lack(sim, tmp_path):
    path = write_manifest(tmp_path / "ok.yaml", ["a fox"])
    out = tmp_path / "run"
    assert run_cli("run", path, "--out", out, env=sim_env(sim)).returncode == 0
    res = run_cli("resume", out, "--name-template", "{style}.{ext}", env=sim_env(sim))
    assert res.returncode == 2 and "style" in res.stderr and "Traceback" not in res.stderr
