"""The public API is what `batch_runner.__all__` lists, and every name in it imports."""

import importlib

import batch_runner

PUBLIC = {
    "__version__",
    "run",
    "arun",
    "RunResult",
    "load_jobs",
    "JobSpec",
    "JobRecord",
    "JobState",
    "StateStore",
    "RunComfyClient",
    "SimConfig",
    "start_simulator",
}


def test_all_is_pinned():
    assert set(batch_runner.__all__) == PUBLIC


def test_every_public_name_imports():
    for name in batch_runner.__all__:
        assert getattr(batch_runner, name) is not None
        assert getattr(importlib.import_module("batch_runner"), name) is getattr(batch_runner, name)


def test_unknown_names_raise_attribute_error():
    try:
        batch_runner.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
