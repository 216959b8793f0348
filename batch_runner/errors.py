"""The exception tree of batch_runner; the CLI maps each branch to a message and an exit code.

BatchRunnerError
├── UsageError            bad flag or option value                      exit 2
├── ManifestError         manifest unreadable or invalid (all problems)  exit 2
├── StateError            state file unusable (corrupt, newer, locked)   exit 2
│   └── LockedError       another process runs this directory            exit 2
├── AccountError          bad token, inactive account, no credits        exit 3
└── ApiError              one API call failed (carries status, code, request_id)
    ├── TransportError    no answer: refused, reset, timeout, bad body
    └── DownloadError     a file download failed or was refused
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchRunnerError(Exception):
    """Base of every error batch_runner raises on purpose."""

    exit_code = 1


class UsageError(BatchRunnerError):
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a manifest, located in its file."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ManifestError(BatchRunnerError):
    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StateError(BatchRunnerError):
    exit_code = 2


class LockedError(StateError):
    pass


class AccountError(BatchRunnerError):
    exit_code = 3


class ApiError(BatchRunnerError):
    """An API call that failed; `sent`: whether the request body may have reached the server."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        sent: bool = True,
        kind: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.request_id = request_id
        self.retry_after = retry_after
        self.sent = sent
        self.kind = kind


class TransportError(ApiError):
    """No usable answer: connection refused/reset/closed, timeout, or a body that is not JSON."""


class DownloadError(ApiError):
    """A file download failed: HTTP error, truncated body, bad signature, too big, host refused."""
