"""A faithful RunComfy Model API simulator with fault injection, for tests and benchmarks.

It serves the queue API of CONTRACT §1 (submit, status, result, cancel) with RunComfy's error
bodies, real PNG/JPEG output files on its own host, and control endpoints without a token:
GET /_sim/stats, GET /_sim/jobs, GET|POST /_sim/config (live overrides), POST /_sim/reset.

Directives in the prompt text make single jobs behave deterministically:

- ``[sim:fail]``: the generation ends "failed" with an "error".
- ``[sim:error200]``: the submit answers HTTP 200 with ``{"error_code": 500001, ...}``; no job.
- ``[sim:latency=S]``: the job stays in progress for S seconds.
"""

from batch_runner.simulator.app import create_app
from batch_runner.simulator.config import SimConfig, add_arguments, config_from_args
from batch_runner.simulator.server import SimHandle, serve, start_simulator

__all__ = [
    "SimConfig",
    "SimHandle",
    "add_arguments",
    "config_from_args",
    "create_app",
    "serve",
    "start_simulator",
]
