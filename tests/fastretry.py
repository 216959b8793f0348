"""The console script with retry sleeps switched off (`batch_runner.api.policy.set_testing`).

For tests that count retries rather than time them: what is retried, how often and why stays
the same, only the waits between tries go. Tests of backoff or Retry-After use `conftest.run_cli`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_MAIN = (
    "import sys; sys.argv[0] = 'batch-runner'; "
    "from batch_runner.api.policy import set_testing; set_testing(True); "
    "from batch_runner.cli.main import main; sys.exit(main())"
)
COMMAND = [sys.executable, "-c", _MAIN]


def _env(env: dict[str, str] | None) -> dict[str, str]:
    if env is None:
        return {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    return env


def run_fast(
    *args: object, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *map(str, args)],
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def spawn_fast(*args: object, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *map(str, args)],
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
