"""A faithful RunComfy Model API simulator with fault injection, for tests and benchmarks.

It serves the queue API of CONTRACT §1 (submit, status, result, cancel) with RunComfy's error
bodies, the model catalogue in the live shape (GET /v1/models, GET /v1/models/categories,
GET /v1/models/{model_path}: the 121 bundled models with made-up prices and `kind`,
`categories`, "float" numbers, sample media defaults, plus a workflow and an inference
endpoint that cannot be submitted; or the entries of `--catalog FILE`), the account balance
(GET /prod/v2/balance, with `balance_microdollars`), output files on its
own host (PNG/JPEG/WebP images, a real MP4, a real WAV, by the model's output type), and
control endpoints without a token: GET /_sim/stats, GET /_sim/jobs, GET|POST /_sim/config
(live overrides), POST /_sim/reset (forgets jobs and counters, not the balance).

Every submit is validated with its model's own schema (422001 with `detail`), including media
inputs (media.py); a submit whose most possible cost exceeds the balance gets 402 / 400002.
A completed job's cost is taken from the balance when it finishes.

POST /_sim/config keys beyond the fault settings of SimConfig:

- ``balance``: the balance in USD now (a top-up or a drain).
- ``prices``: ``{MODEL: USD}``, the models' ``base_price_usd`` (as ``--price``; replaces the
  previous mapping).
- ``models``: ``{MODEL: {field: value}}``, catalogue fields (``input_schema``,
  ``base_price_usd``, ``categories``, ``kind``, ``price_unit``, ``display_name``, ...; an
  ``output_type`` becomes the category naming it) laid over the served entry of MODEL, or
  making a new model (images, schema ``{"type": "object"}`` unless given). It replaces the
  previous overrides; tests use it to serve a catalogue that differs
  from the bundled one.

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
