"""Run options: one dataclass, built in one place from layers of options (later layers win)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from batch_runner.errors import UsageError

DEFAULT_API_BASE = "https://model-api.runcomfy.net"
API_BASE_ENV = "RUNCOMFY_API_BASE"  # read by the command line, like a flag given every time
DEFAULT_ACCOUNT_BASE = "https://api.runcomfy.net"  # the balance lives there (CONTRACT §1)
ACCOUNT_BASE_ENV = "RUNCOMFY_ACCOUNT_BASE"
REAL_DOWNLOAD_HOSTS = ["*.runcomfy.net", "*.runcomfy.com"]


@dataclass
class RunSettings:
    """Everything a run needs besides its jobs; stored in the state file for `resume`."""

    concurrency: int = 8
    rate: float | None = None
    retries: int = 1
    job_timeout: float = 3600.0
    resubmit_uncertain: bool = True
    name_template: str | None = None
    allow_download_host: list[str] = field(default_factory=list)
    max_file_bytes: int = 2**31
    max_inline_mb: float = 8.0  # local files / data URIs sent inline (CONTRACT §3)
    allow_input_host: list[str] = field(default_factory=list)  # http or private input hosts
    max_jobs: int = 100_000
    api_base: str = DEFAULT_API_BASE
    simulate: bool = False
    progress: bool = True
    json: bool = False
    export_csv: bool = False
    offline: bool = False  # never ask the live catalogue: bundled or cached entries only
    max_cost: float | None = None  # USD; jobs that do not fit stay pending (CONTRACT §6)
    balance_check: bool = True
    account_base: str | None = None  # None: see `balance_base`
    retry_failed: bool = False  # this run only: failed jobs get a new round (never stored)
    # this run only (--resubmit-uncertain): every uncertain job is sent once more (never stored)
    resubmit_uncertain_now: bool = False
    tqdm_auto: bool = False  # the Python API's progress=True: tqdm.auto bars (notebook widgets)
    pilot: int | None = None  # this run only (--pilot N): N of the new jobs (run/pilot.py)
    archive: str | None = None  # --archive FILE, an absolute path (run/archived.py)

    # options a manifest may set (never api_base: a copied manifest must not redirect the token)
    MANIFEST_KEYS = (
        "concurrency",
        "rate",
        "retries",
        "job_timeout",
        "resubmit_uncertain",
        "name_template",
        "allow_download_host",
        "max_file_bytes",
        "max_inline_mb",
        "allow_input_host",
        "max_jobs",
        "export_csv",
        "offline",
        "max_cost",
        "balance_check",
    )
    # options the run directory remembers: a later `run MANIFEST` or `resume` without the flag
    # keeps the value last given (README "Budgets and remembered options"); the others
    # (progress, json, retry_failed, tqdm_auto) are for one run only
    STORED_KEYS = MANIFEST_KEYS + ("api_base", "simulate", "account_base", "archive")

    @classmethod
    def from_layers(cls, *layers: tuple[str, Mapping[str, Any]]) -> RunSettings:
        """The defaults, then each (origin, options) layer in turn, a later one winning.

        A run's layers are the settings its run directory remembers, its manifest's `options:`
        changed since they were last run (cli/layers.py), then the command line; a resume's
        (and a cancel's) the remembered settings then the command line. `origin` names the
        layer in error messages.
        """
        settings = cls()
        for origin, values in layers:
            settings.apply(values, origin=origin)
        return settings

    def apply(self, values: Mapping[str, Any], *, origin: str) -> None:
        """Set options from a mapping (manifest options or stored meta), checking each value."""
        names = {f.name for f in fields(self)}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key not in names:
                raise UsageError(f"{origin}: unknown option '{raw_key}'")
            setattr(self, key, _coerce(key, value, origin))
        try:
            self.check()
        except UsageError as exc:  # the flag's own message, and where the value came from
            if origin == "command line":
                raise
            raise UsageError(f"{origin}: {exc}") from None

    @property
    def balance_base(self) -> str:
        """Where the balance is read: --account-base, else RunComfy's account API for the real
        Model API, else the API base itself (a simulator or a proxy serves both)."""
        if self.account_base:
            return self.account_base.rstrip("/")
        if self.api_base.rstrip("/") == DEFAULT_API_BASE:
            return DEFAULT_ACCOUNT_BASE
        return self.api_base.rstrip("/")

    def stored(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.STORED_KEYS}

    def check(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise UsageError("--rate must be a positive number of requests per second")
        if self.retries < 0:
            raise UsageError("--retries must be 0 or more")
        if self.job_timeout <= 0:
            raise UsageError("--job-timeout must be a positive number of seconds")
        if self.max_file_bytes < 1:
            raise UsageError("--max-file-bytes must be positive")
        if self.max_inline_mb <= 0:
            raise UsageError("--max-inline-mb must be a positive number of megabytes")
        if self.max_jobs < 0:
            raise UsageError("--max-jobs must be 0 or more")
        if self.max_cost is not None and self.max_cost < 0:
            raise UsageError(f"--max-cost must be 0 or more US dollars, got {self.max_cost:g}")
        for name in ("api_base", "account_base"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be an http(s) URL, got '{value}'")
        if self.api_base.rstrip("/").endswith("/v1"):
            raise UsageError(
                f"--api-base {self.api_base}: give the part before /v1 "
                f"(e.g. {DEFAULT_API_BASE}); batch-runner adds /v1/models/... itself"
            )


_TYPES: dict[str, type] = {
    "concurrency": int,
    "retries": int,
    "max_file_bytes": int,
    "max_jobs": int,
    "pilot": int,
    "rate": float,
    "job_timeout": float,
    "max_inline_mb": float,
    "max_cost": float,
}


_BOOLS = (
    "resubmit_uncertain",
    "simulate",
    "progress",
    "json",
    "export_csv",
    "offline",
    "balance_check",
    "retry_failed",
    "resubmit_uncertain_now",
    "tqdm_auto",
)


# what each number counts, for the messages about a wrong one
_UNITS = {
    "concurrency": "jobs",
    "retries": "attempts",
    "max_file_bytes": "bytes",
    "max_jobs": "jobs",
    "pilot": "jobs",
    "rate": "requests per second",
    "job_timeout": "seconds",
    "max_inline_mb": "megabytes",
    "max_cost": "US dollars",
}


def _coerce(key: str, value: Any, origin: str) -> Any:
    if key in _TYPES and value is not None:
        return _number(key, value, origin)
    if key in ("allow_download_host", "allow_input_host"):
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{origin}: option '{key}' must be a host or a list of hosts")
        return list(value)
    if key in _BOOLS and not isinstance(value, bool):
        raise UsageError(f"{origin}: option '{key}' must be true or false")
    if key in ("name_template", "archive") and value is not None and not isinstance(value, str):
        raise UsageError(f"{origin}: option '{key}' must be a string")
    return value


def _number(key: str, value: Any, origin: str) -> float | int:
    """A numeric option, named as its flag when given on the command line."""
    kind = _TYPES[key]
    flag = "--" + key.replace("_", "-")
    where = flag if origin == "command line" else f"{origin}: option '{key}'"
    wanted = f"a {'whole' if kind is int else 'finite'} number of {_UNITS[key]}"
    bad = UsageError(f"{where} must be {wanted}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad
    try:
        number = kind(value)
    except ValueError:
        raise bad from None
    if not math.isfinite(number):  # nan slips through every comparison, inf is no limit
        if key == "max_cost":
            raise UsageError(f"{bad} (no budget at all: --no-max-cost)")
        raise bad
    if kind is int and number != value and not isinstance(value, str):
        raise bad  # 2.5 jobs is no number of jobs (int() would quietly make it 2)
    return number


def default_run_dir(manifest: Path) -> Path:
    return Path("jobs") / manifest.stem
