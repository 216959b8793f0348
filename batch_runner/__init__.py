"""batch_runner: resumable batches of image, video and audio jobs against the RunComfy Model API.

The public API (imported lazily, so the command line starts fast):

- `run(manifest, *, out=None, simulate=False, **options) -> RunResult` and `await arun(...)`:
  a whole batch from Python (a manifest path, or a list of prompts / job mappings)
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
    "arun": "batch_runner.cli.pyapi",
    "RunResult": "batch_runner.run.runner",
    "load_jobs": "batch_runner.manifest.load",
    "JobSpec": "batch_runner.jobs",
    "JobRecord": "batch_runner.jobs",
    "JobState": "batch_runner.jobs",
    "StateStore": "batch_runner.store.state",
    "RunComfyClient": "batch_runner.api.client",
    "SimConfig": "batch_runner.simulator",
    "start_simulator": "batch_runner.simulator",
}
__all__ = ["__version__", "run", *_EXPORTS]


# `batch_runner.run(manifest, *, out=None, simulate=False, **options) -> RunResult` runs a
# batch (batch_runner.cli.pyapi.run). The name is also the `batch_runner/run/` package's: the
# import system sets that attribute when the package is first imported, so the package is
# imported here first, and this callable takes the name after it, forwarding module lookups
# (`batch_runner.run.runner`, as mock.patch paths use them) to the package.
class _Run:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _pyapi().run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return importlib.import_module(f"batch_runner.run.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"batch_runner.run has no attribute {name!r}") from None

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return _pyapi().run.__doc__

    def __repr__(self) -> str:
        return "<function batch_runner.run>"


def _pyapi() -> Any:
    return importlib.import_module(_EXPORTS["arun"])  # by name: the base imports no room


importlib.import_module("batch_runner.run")  # the package first (see _Run); it imports nothing
run = _Run()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'batch_runner' has no attribute {name!r}")
