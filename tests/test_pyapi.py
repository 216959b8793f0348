"""The Python API (CONTRACT §8): batch_runner.run / arun from plain Python and from inside a
running event loop, with a list of prompts and with a manifest path; errors are the
batch_runner.errors tree, never SystemExit."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import SIM_TOKEN, read_metadata, write_manifest

import batch_runner
from batch_runner.errors import ManifestError, UsageError


@pytest.fixture
def api(sim, monkeypatch):
    """The simulator as the API, with its token in the environment (as a user would set it)."""
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", SIM_TOKEN)
    return sim.base_url


def test_run_a_list_of_prompts_from_plain_python(api, sim, tmp_path):
    jobs = ["a red fox", {"prompt": "an owl", "meta": {"split": "train"}}]
    result = batch_runner.run(jobs, out=tmp_path / "run", api_base=api, concurrency=2)
    assert isinstance(result, batch_runner.RunResult)
    assert result.exit_code == 0 and result.run_dir == tmp_path / "run"
    assert result.summary["jobs"] == 2 and result.summary["counts"] == {"done": 2}
    lines = read_metadata(tmp_path / "run")
    assert sorted(line["prompt"] for line in lines) == ["a red fox", "an owl"]
    assert sim.stats()["submitted"] == 2
    # the same list again: nothing is submitted twice
    again = batch_runner.run(jobs, out=tmp_path / "run", api_base=api)
    assert again.exit_code == 0 and sim.stats()["submitted"] == 2


def test_run_from_inside_a_running_event_loop(api, sim, tmp_path):
    manifest = write_manifest(tmp_path / "m.yaml", ["a heron", "a crane"])

    async def notebook_cell():
        # what a Jupyter cell does: a plain call while the kernel's loop is running
        blocking = batch_runner.run(manifest, out=tmp_path / "a", api_base=api)
        awaited = await batch_runner.arun(
            ["a stork"], out=tmp_path / "b", api_base=api, set={"output_format": "jpeg"}
        )
        return blocking, awaited

    blocking, awaited = asyncio.run(notebook_cell())
    assert blocking.exit_code == 0 and blocking.summary["counts"] == {"done": 2}
    assert awaited.exit_code == 0 and awaited.summary["counts"] == {"done": 1}
    assert read_metadata(tmp_path / "b")[0]["file_name"].endswith(".jpg")
    assert sim.stats()["submitted"] == 3


def test_progress_bars_when_asked(api, tmp_path, capsys):
    result = batch_runner.run(["a wren"], out=tmp_path / "run", api_base=api, progress=True)
    assert result.exit_code == 0
    assert "finished" in capsys.readouterr().err  # tqdm.auto writes its bars to stderr


def test_errors_are_the_exception_tree_never_system_exit(api, sim, tmp_path):
    with pytest.raises(UsageError, match="out="):
        batch_runner.run(["a fox"], api_base=api)
    with pytest.raises(UsageError, match="unknown option 'colour'"):
        batch_runner.run(["a fox"], out=tmp_path / "x", colour="red")
    with pytest.raises(UsageError, match="--concurrency"):
        batch_runner.run(["a fox"], out=tmp_path / "x", concurrency="many")
    with pytest.raises(ManifestError) as caught:
        batch_runner.run([{"prompt": "a fox", "resolution": "huge"}, 7], out=tmp_path / "x")
    text = str(caught.value)
    assert "<jobs>:1: resolution" in text and "<jobs>:2:" in text
    assert sim.stats()["submitted"] == 0


def test_a_failed_job_is_an_exit_code_not_an_exception(make_sim, monkeypatch, tmp_path):
    sim = make_sim("--latency", "0.05", "--fail-rate", "1")
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", SIM_TOKEN)
    result = batch_runner.run(["a fox"], out=tmp_path / "run", api_base=sim.base_url, retries=0)
    assert result.exit_code == 1 and result.summary["counts"] == {"failed": 1}
    json.dumps(result.summary)  # the status --json object


def test_the_run_name_is_both_the_function_and_the_package():
    assert callable(batch_runner.run) and "out" in batch_runner.run.__doc__
    from batch_runner.run import runner

    assert batch_runner.run.runner is runner
    assert batch_runner.RunResult is runner.RunResult
