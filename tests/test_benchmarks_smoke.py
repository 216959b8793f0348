"""Each benchmark runs in quick mode and prints its table (figures are not checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "overhead": "### 1. Overhead",
    "concurrency": "### 2. Concurrency efficiency",
    "polling": "### 3. Requests per job",
    "scale": "### 4. Scale",
    "bigfiles": "### 5. Big files",
    "scale_grid": "### 6. Polling at scale",
    "frontier": "### 6c. What any poller can reach",
    "planner_replay": "### 6d. The planner replayed offline",
    "shards": "### 7. Shards",
    "media": "### 8. Media inputs",
    "file_io": "### 9. File I/O on the event loop",
    "eta": "### 10. ETA honesty",
    "pipeline_streaming": "### 11. Pipeline streaming",
    "exports": "### 12. Data-set exports",
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_benchmark_quick_prints_its_table(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert CASES[module] in done.stdout
    assert "| " in done.stdout  # a table row, whatever the figures
