"""The exception tree of batch_runner; the CLI maps each branch to a message and an exit code.

BatchRunnerError
├── UsageError            bad flag or option value                      exit 2
├── ManifestError         manifest unreadable or invalid (all problems)  exit 2
├── StateError            state file unusable (corrupt, newer, locked)   exit 2
│   └── LockedError       another process runs this directory            exit 2
├── AccountError          bad token, inactive account, no credits        exit 3
├── UnreachableError      the API could not be reached over a whole window exit 4
└── RemoteError           a call to another machine failed (carries kind, status, retry_after)
    ├── ApiError          one API call failed (also carries error_code, request_id)
    │   └── TransportError  no answer: refused, reset, timeout, bad body
    └── DownloadError     a file download failed or was refused (the file host is not the API)

A `RemoteError` says how it failed with an `ErrorKind`; `api.policy.classify` decides from
the kind what to do next. Errors of the libraries below (aiohttp, the socket) are translated
into these in one place each: `api.client` for API calls, `outputs.download` for files, with
the original kept as `__cause__` (the CLI prints only the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    model: str | None = None  # the model whose schema the problem is about
    stage: str | None = None  # the pipeline stage it is in (manifest/stages.py)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        stage = f" stage {self.stage}:" if self.stage else ""
        model = f" model {self.model}:" if self.model else ""
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{stage}{model}{field} {self.message}"


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


class UnreachableError(BatchRunnerError):
    """Every API call failed to connect or timed out for the outage window: the run stops,
    nothing is marked failed, and a resume carries on once the API is back."""

    exit_code = 4


class ErrorKind(StrEnum):
    """How a remote call failed; the values are the retry causes a run's summary counts."""

    # an answer that is an error
    HTTP_4XX = "4xx"
    HTTP_5XX = "5xx"
    THROTTLED = "429"
    ERROR_200 = "error200"  # HTTP 2xx whose body carries an error_code
    EXPIRED = "expired"  # 404001: the API no longer knows the request id
    BAD_ANSWER = "bad_answer"  # not JSON, or not the documented shape
    UNKNOWN_STATUS = "unknown_status"
    # no answer
    DROPPED = "dropped"  # refused, reset or closed
    TIMEOUT = "timeout"
    # a file download
    EXPIRED_URL = "expired_url"  # 403/404/410 on the file URL: ask /result for fresh ones
    TRUNCATED = "truncated"
    TOO_BIG = "too_big"
    BAD_FILE = "bad_file"  # not a PNG, JPEG, MP4 or WEBM
    BAD_NAME = "bad_name"  # the file name would leave the images folder
    BAD_URL = "bad_url"
    BAD_REDIRECT = "bad_redirect"
    HOST_REFUSED = "host_refused"


class RemoteError(BatchRunnerError):
    """A call to another machine failed; `sent`: whether the request may have reached it."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ):
        super().__init__(message)
        self.message = message
        self.kind = None if kind is None else ErrorKind(kind)
        self.status = status
        self.retry_after = retry_after
        self.sent = sent


class ApiError(RemoteError):
    """An API call that failed: the answer's `error_code` and the `request_id` it was about."""

    def __init__(
        self,
        message: str,
        *,
        error_code: int | None = None,
        request_id: str | None = None,
        kind: ErrorKind | str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        sent: bool = True,
    ):
        super().__init__(message, kind=kind, status=status, retry_after=retry_after, sent=sent)
        self.error_code = error_code
        self.request_id = request_id


class TransportError(ApiError):
    """No usable answer: connection refused/reset/closed, timeout, or a body that is not JSON."""


class DownloadError(RemoteError):
    """A file download failed: HTTP error, truncated body, bad signature, too big, host refused."""
