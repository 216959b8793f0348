"""The shipped sample manifests run with --simulate, from a relative run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import read_metadata, run_cli

SAMPLE_DIR = Path(__file__).parent.parent / "sample_manifests"
SAMPLES = sorted(p for p in SAMPLE_DIR.iterdir() if p.is_file())  # stills/ holds inputs


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_manifest_runs_on_the_builtin_simulator(sample, tmp_path):
    shutil.copytree(SAMPLE_DIR, tmp_path, dirs_exist_ok=True)  # with the folders it reads
    res = run_cli("run", sample.name, "--simulate", "--json", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    run_dir = tmp_path / "jobs" / sample.stem
    assert summary["counts"] == {"done": summary["jobs"]}
    assert len(read_metadata(run_dir)) == summary["files"] >= summary["jobs"]
    assert (run_dir / "report.html").is_file()
