"""The API token: where it is read from, and scrubbing it from anything printed."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from batch_runner.errors import UsageError

TOKEN_ENV = "RUNCOMFY_API_TOKEN"
# RunComfy's own CLI reads this one; accepted too, and ours wins when both are set
RUNCOMFY_TOKEN_ENV = "RUNCOMFY_TOKEN"
_SECRETS: set[str] = set()  # tokens read in this process


def read_token(token_file: Path | None) -> str:
    """The token from `--token-file`, else from the environment; UsageError when there is none."""
    if token_file is not None:
        return _from_file(token_file)
    token = _from_env()
    if not token:
        raise UsageError(
            f"no API token: set {TOKEN_ENV} in the environment or pass --token-file FILE "
            "(or add --simulate to try the built-in simulator)"
        )
    _SECRETS.add(token)
    return token


def token_if_any(token_file: Path | None) -> str | None:
    """The token when one is at hand (`--token-file` or the environment), else None."""
    if token_file is None and not _from_env():
        return None
    return read_token(token_file)


def _from_env() -> str:
    for name in (TOKEN_ENV, RUNCOMFY_TOKEN_ENV):
        token = os.environ.get(name, "").strip()
        if token:
            return token
    return ""


def _from_file(path: Path) -> str:
    try:
        info = path.stat()
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"--token-file {path}: cannot read it ({getattr(exc, 'strerror', exc)})"
        ) from None
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {path} is readable by other users; chmod 600 it", file=sys.stderr)
    if not token:
        raise UsageError(f"--token-file {path}: the file is empty")
    _SECRETS.add(token)
    return token


def scrub(text: str) -> str:
    """`text` with every token this process knows of (read, or in the environment) as ***."""
    in_env = {os.environ.get(name, "").strip() for name in (TOKEN_ENV, RUNCOMFY_TOKEN_ENV)}
    for secret in (_SECRETS | in_env) - {""}:
        text = text.replace(secret, "***")
    return text
