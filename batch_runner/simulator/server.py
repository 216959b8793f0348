"""Running the simulator: in-process for tests (start_simulator) or in the foreground (serve)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from batch_runner.simulator.app import SIM_KEY, create_app
from batch_runner.simulator.config import SimConfig
from batch_runner.simulator.hostile import OFFHOST


@dataclass
class SimHandle:
    """A running simulator: where it listens and a window on its state."""

    base_url: str  # e.g. "http://127.0.0.1:43123", the part before /v1
    app: web.Application
    offhost_url: str | None = None  # "http://127.0.0.2:PORT" when that listener could start

    @property
    def config(self) -> SimConfig:
        """The live settings; changes apply to the next request."""
        return self.app[SIM_KEY].config

    def stats(self) -> dict[str, Any]:
        """The same counters as GET /_sim/stats."""
        return self.app[SIM_KEY].stats_dict()

    def jobs(self) -> list[dict[str, Any]]:
        """The same list as GET /_sim/jobs."""
        return self.app[SIM_KEY].store.jobs()

    def reset(self) -> None:
        """Forget every job and counter, like POST /_sim/reset."""
        self.app[SIM_KEY].store.reset()


async def _offhost_site(runner: web.AppRunner, host: str, port: int) -> str | None:
    """Serve the same app on 127.0.0.2:PORT too, for the off-host hostile cases."""
    if host != "127.0.0.1":
        return None
    try:
        site = web.TCPSite(runner, OFFHOST, port)
        await site.start()
    except OSError:
        return None  # e.g. a system without 127.0.0.2; off-host cases then fail to connect
    return f"http://{OFFHOST}:{port}"


@contextlib.asynccontextmanager
async def start_simulator(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SimHandle]:
    """Run a simulator on host:port (0 = a free port) for the duration of the block."""
    app = create_app(config or SimConfig())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        site = web.SockSite(runner, sock)
        await site.start()
        real_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        offhost = await _offhost_site(runner, host, real_port)
        yield SimHandle(base_url=f"http://{shown}:{real_port}", app=app, offhost_url=offhost)
    finally:
        sim = app[SIM_KEY]
        sim.config.hold_submits = []  # held submit answers go, so the shutdown need not wait
        sim.faults.settings_changed()
        sim.store.reset()  # cancels pending generation timers
        await runner.cleanup()


async def serve(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until cancelled; the first stdout line is "simulator listening on http://HOST:PORT"."""
    async with start_simulator(config, host, port) as sim:
        print(f"simulator listening on {sim.base_url}", flush=True)
        await asyncio.Event().wait()


def run_foreground(config: SimConfig, host: str, port: int) -> int:
    """Run `serve` until Ctrl-C or SIGTERM; returns the exit status (0)."""

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await serve(config, host, port)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.stdout.flush()
    return 0
