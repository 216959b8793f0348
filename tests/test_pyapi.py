"""The Python API (CONTRACT §8): batch_runner.run / arun from plain Python and from inside a
running event loop, with a list of prompts and with a manifest path; errors are the
batch_runner.errors tree, never SystemExit."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SIM_TOKEN, read_metadata, run_cli, sim_env, write_manifest

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
        batch_runner.run(["a fox"], out=tmp_path / "x", api_base=api, concurrency="many")
    with pytest.raises(ManifestError) as caught:
        jobs = [{"prompt": "a fox", "resolution": "huge"}, 7]
        batch_runner.run(jobs, out=tmp_path / "x", api_base=api)
    text = str(caught.value)
    assert "<jobs>:1: " in text and "resolution: 'huge'" in text and "<jobs>:2:" in text
    assert sim.stats()["submitted"] == 0


def test_shards_from_python_and_from_the_manifest_options(make_sim, monkeypatch, tmp_path):
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", SIM_TOKEN)
    api = make_sim("--latency", "0.02:0.05", "--image-scale", "0.02").base_url  # quick jobs
    prompts = [f"a heron {i}" for i in range(6)]
    manifest = write_manifest(tmp_path / "m.yaml", prompts)
    out = tmp_path / "run"
    one = batch_runner.run(manifest, shard="1/2", api_base=api, out=out)
    assert one.exit_code == 0 and one.run_dir == out / "shard-1-of-2"
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    zero = batch_runner.run(manifest, shards=2, api_base=api, out=out)
    assert zero.exit_code == 0 and zero.run_dir == out / "shard-0-of-2"
    assert one.summary["jobs"] + zero.summary["jobs"] == 6 and zero.summary["counts"]["done"]
    # `shards: 2` in the manifest's options: K from the environment, as with shards=2
    optioned = tmp_path / "o.yaml"
    optioned.write_text("options: {shards: 2}\n" + manifest.read_text())
    again = batch_runner.run(optioned, api_base=api, out=tmp_path / "o")
    assert again.exit_code == 0 and again.run_dir == tmp_path / "o" / "shard-0-of-2"
    assert again.summary["jobs"] == zero.summary["jobs"]
    with pytest.raises(UsageError, match="not both"):
        batch_runner.run(manifest, shard="0/2", shards=2, simulate=True, out=out)


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


NOTEBOOK = """\
import asyncio, sys
import batch_runner

async def cell():
    return batch_runner.run(["a fox", "an owl"], out=sys.argv[1], api_base=sys.argv[2])

# a kernel's loop: Ctrl-C raises KeyboardInterrupt in the running cell (asyncio.run would
# cancel its task instead)
result = asyncio.new_event_loop().run_until_complete(cell())
print("exit", result.exit_code, flush=True)
"""


def test_ctrl_c_in_a_notebook_stops_the_run_resumably(make_sim, tmp_path):
    sim = make_sim("--latency", "60", "--image-scale", "0.02")
    script = tmp_path / "cell.py"
    script.write_text(NOTEBOOK)
    env = {**sim_env(sim), "PYTHONPATH": str(Path(batch_runner.__file__).parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "run"), sim.base_url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while sim.stats()["submitted"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert "exit 130" in stdout, stderr
    status = json.loads(run_cli("status", tmp_path / "run", "--json").stdout)
    assert status["jobs"] == 2 and not status["counts"].get("done")
    assert status["counts"].get("queued", 0) + status["counts"].get("running", 0) == 2
    assert sim.stats()["submitted"] == 2  # resumable: both request_ids are in the state
