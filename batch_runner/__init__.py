"""batch_runner: resumable batches of text-to-image jobs against the RunComfy Model API.

The public API (imported lazily, so the command line starts fast):

- `load_jobs(path, overrides=None, max_jobs=100_000, name_template=None)`: manifest → jobs
- `JobSpec`, `JobRecord`, `JobState`: jobs before and after they reach the state file
- `StateStore`: the SQLite state file of a run directory
- `RunComfyClient`: the API client (an aiohttp session and a base URL come from outside)
- `SimConfig`, `start_simulator`: the RunComfy simulator
- the exception tree in `batch_runner.errors`
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_jobs": "batch_runner.manifest.load",
    "JobSpec": "batch_runner.jobs",
    "JobRecord": "batch_runner.jobs",
    "JobState": "batch_runner.jobs",
    "StateStore": "batch_runner.store.state",
    "RunComfyClient": "batch_runner.api.client",
    "SimConfig": "batch_runner.simulator",
    "start_simulator": "batch_runner.simulator",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'batch_runner' has no attribute {name!r}")
