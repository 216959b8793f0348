"""The exception tree: its shape, its drawing in errors.py, and error kinds as enum members."""

from __future__ import annotations

import inspect
import re

import pytest

from batch_runner import errors
from batch_runner.api.answers import error_from_answer, parse_poll
from batch_runner.api.policy import Action, classify
from batch_runner.errors import (
    ApiError,
    BatchRunnerError,
    DownloadError,
    ErrorKind,
    RemoteError,
    TransportError,
)


def test_api_and_download_errors_are_siblings_under_remote_error():
    api, download = ApiError("a"), DownloadError("d")
    assert isinstance(api, RemoteError) and isinstance(download, RemoteError)
    assert not isinstance(download, ApiError) and not isinstance(api, DownloadError)
    assert issubclass(TransportError, ApiError) and issubclass(RemoteError, BatchRunnerError)
    assert not hasattr(download, "error_code") and not hasattr(download, "request_id")


def _drawn_parents() -> dict[str, str | None]:
    """Class name -> the name of its parent, as drawn in errors.py's docstring."""
    parents: dict[str, str | None] = {}
    path: list[str] = []  # the names from the root down to the line before
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^([│ ]*)(?:[├└]── )?([A-Z]\w+Error)\b", line)
        if found:
            depth = len(found.group(1)) // 4 + ("──" in line)
            del path[depth:]
            parents[found.group(2)] = path[-1] if path else None
            path.append(found.group(2))
    return parents


def test_the_drawn_tree_is_the_real_tree():
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BatchRunnerError)
    }
    drawn = _drawn_parents()
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        parent = None if cls is BatchRunnerError else cls.__bases__[0].__name__
        assert drawn[name] == parent, name


def test_kinds_are_enum_members_even_when_given_as_text():
    error = DownloadError("x", kind="truncated")
    assert error.kind is ErrorKind.TRUNCATED and error.kind == "truncated"
    assert ApiError("x").kind is None
    with pytest.raises(ValueError):
        ApiError("x", kind="no such kind")


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, {"error_code": 429001}, ErrorKind.THROTTLED),
        (503, None, ErrorKind.HTTP_5XX),
        (404, {"error_code": 404001}, ErrorKind.EXPIRED),
        (422, {"error_code": 422001}, ErrorKind.HTTP_4XX),
        (200, {"error_code": 500001}, ErrorKind.HTTP_5XX),
        (200, {"error_code": 123}, ErrorKind.ERROR_200),
        (200, None, ErrorKind.BAD_ANSWER),
        (302, None, ErrorKind.BAD_ANSWER),
    ],
)
def test_answers_carry_enum_kinds(status, body, kind):
    error = error_from_answer(status, body, b"", "r", None)
    assert isinstance(error, ApiError) and error.kind is kind


def test_unknown_status_is_its_own_kind():
    with pytest.raises(ApiError) as info:
        parse_poll({"status": "teleported"}, "r")
    assert info.value.kind is ErrorKind.UNKNOWN_STATUS


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_kind_is_classified_for_each_operation(kind):
    """No kind falls through the policy: each gives an action, and the kind is the cause."""
    for op in ("submit", "poll", "cancel"):
        decision = classify(ApiError("x", kind=kind), op)
        assert decision.action in Action and decision.cause == kind
    decision = classify(DownloadError("x", kind=kind), "download")
    assert decision.action in Action and decision.cause == kind
