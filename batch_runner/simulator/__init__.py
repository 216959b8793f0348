"""A faithful RunComfy Model API simulator with fault injection, for tests and benchmarks.

It serves the queue API of CONTRACT §1 (submit, status, result, cancel) with RunComfy's error
bodies, real PNG/JPEG output files on its own host, and control endpoints without a token:
GET /_sim/stats, GET /_sim/jobs, GET|POST /_sim/config (live overrides), POST /_sim/reset.

Directives in the prompt text make single jobs behave deterministically:

- ``[sim:fail]``: the generation ends "failed" with an "error".
- ``[sim:error200]``: the submit answers HTTP 200 with ``{"error_code": 500001, ...}``; no job.
- ``[sim:latency=S]``: the job stays in progress for S seconds.
"""

from typing import TYPE_CHECKING, Any

from batch_runner.simulator.config import SimConfig, add_arguments, config_from_args

if TYPE_CHECKING:
    from batch_runner.simulator.app import create_app
    from batch_runner.simulator.server import SimHandle, serve, start_simulator

# The server side (aiohttp.web, jsonschema, Pillow) loads on first use: every command's
# parser needs `add_arguments`, and importing the rest cost each start-up ~0.25 s.
_LAZY = {
    "create_app": "app",
    "SimHandle": "server",
    "serve": "server",
    "start_simulator": "server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"batch_runner.simulator.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SimConfig",
    "SimHandle",
    "add_arguments",
    "config_from_args",
    "create_app",
    "serve",
    "start_simulator",
]
