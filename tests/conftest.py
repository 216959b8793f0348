"""Shared fixtures: a clean environment, the simulator as a real subprocess, the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from localserver import Handler, Server

BIN = Path(sys.executable).parent
CLI = str(BIN / "batch-runner")
SIM_TOKEN = "sim-token"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # the live-catalogue cache of each test is its own, never the user's ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    for name in (
        "RUNCOMFY_API_TOKEN",
        "RUNCOMFY_TOKEN",
        "RUNCOMFY_API_BASE",
        "RUNCOMFY_ACCOUNT_BASE",
    ):
        monkeypatch.delenv(name, raising=False)


class Sim:
    """A `batch-runner simulate` subprocess on 127.0.0.1 and its control API."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [CLI, "simulate", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("simulator listening on "):
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r} {self.proc.stderr.read()}")
        self.base_url = line.rsplit(" ", 1)[1]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict, token: str | None = None) -> Any:
        """POST a JSON body (with `token`: as an API client, e.g. a submit of the test's own)."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST", headers=headers
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stats(self) -> dict[str, Any]:
        return self.get("/_sim/stats")

    def jobs(self) -> list[dict[str, Any]]:
        return self.get("/_sim/jobs")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def make_sim() -> Iterator[Any]:
    sims: list[Sim] = []

    def start(*args: str) -> Sim:
        sim = Sim(*args)
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


@pytest.fixture
def sim(make_sim: Any) -> Sim:
    return make_sim("--latency", "0.05:0.2")


def sim_env(sim: Sim, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    env.update(RUNCOMFY_API_TOKEN=SIM_TOKEN, RUNCOMFY_API_BASE=sim.base_url)
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCOMFY_")}
    return subprocess.run(
        [CLI, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def run_json(*args: Any, env: dict[str, str] | None = None, timeout: float = 120):
    """A command with --json --no-progress: (exit code, its JSON object or {}, stderr); it never
    ends in a traceback or an internal error."""
    res = run_cli(*args, "--json", "--no-progress", env=env, timeout=timeout)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}, res.stderr


def status_json(run_dir: Path) -> dict[str, Any]:
    """`status RUN_DIR --json`, which must succeed."""
    res = run_cli("status", run_dir, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def spawn_cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CLI, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def write_manifest(path: Path, prompts: list[str], **defaults: Any) -> Path:
    lines = []
    if defaults:
        lines.append("defaults: " + json.dumps(defaults))
    lines.append("jobs:")
    lines += [f"  - {json.dumps(p)}" for p in prompts]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_metadata(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metadata.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[tuple[str, Server]]]]:
    """Start tiny servers (`await serve(handler, host)` → (base_url, server)); cleaned up after."""
    servers: list[Server] = []

    async def start(handler: Handler, host: str = "127.0.0.1") -> tuple[str, Server]:
        server = Server(handler, host)
        servers.append(server)
        return await server.start(), server

    yield start
    for server in servers:
        await server.runner.cleanup()
