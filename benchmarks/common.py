"""What every benchmark shares: a simulator subprocess, timed child processes, manifests, tables.

Every tool under test runs as its own child process, so its wall time and peak RSS
(`os.wait4` gives the rusage of that one child) are measured the same way for all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CLI = str(BIN / "batch-runner")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN = "sim-token"
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))  # fewer while tuning


@dataclass
class Timed:
    """One finished child process: exit code, wall seconds, peak RSS (MB), captured output,
    and its CPU seconds (user + system, from the same rusage)."""

    code: int
    wall: float
    rss_mb: float
    stdout: str
    stderr: str
    cpu: float = 0.0

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


def env_for(base_url: str) -> dict[str, str]:
    return {**os.environ, "RUNCOMFY_API_TOKEN": TOKEN, "RUNCOMFY_API_BASE": base_url}


def spawn(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> Running:
    """Start `cmd` with stdout/stderr going to temporary files (no pipe can fill up)."""
    return Running(cmd, env)


class Running:
    """A child process being timed; `wait()` reaps it with `os.wait4` for its own rusage."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str] | None):
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in wait)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(cmd),
            stdout=self._out,
            stderr=self._err,
            env=env,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,  # `python -m benchmarks.floor` imports from the checkout
        )

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 600.0) -> Timed:
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped by `proc.poll()`: no rusage left
                return self._reaped()
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                pid, status, usage = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - self.started
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        out, err = self._read(self._out), self._read(self._err)
        cpu = usage.ru_utime + usage.ru_stime
        return Timed(self.proc.returncode, wall, usage.ru_maxrss / 1024.0, out, err, cpu)

    def _reaped(self) -> Timed:
        wall = time.perf_counter() - self.started
        out, err = self._read(self._out), self._read(self._err)
        return Timed(self.proc.returncode or 0, wall, float("nan"), out, err, float("nan"))

    @staticmethod
    def _read(f: Any) -> str:
        f.seek(0)
        text = f.read().decode("utf-8", "replace")
        f.close()
        return text


def timed(cmd: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True) -> Timed:
    """Run `cmd` to the end; raise with its stderr when it fails and `check` is set."""
    result = spawn(cmd, env=env).wait()
    if check and result.code not in (0,):
        raise RuntimeError(f"{' '.join(cmd)} exited {result.code}:\n{result.stderr[-2000:]}")
    return result


class Simulator:
    """`batch-runner simulate --port 0 ...` as a subprocess, with its /_sim/ controls."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [CLI, "simulate", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("simulator listening on "):
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/_sim/reset", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass

    def post_config(self, overrides: dict[str, Any]) -> None:
        """Change live settings (POST /_sim/config), e.g. {"latency": "5:10", "capacity": 0}."""
        req = urllib.request.Request(
            self.url + "/_sim/config", data=json.dumps(overrides).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=30):
            pass

    def stats(self) -> dict[str, Any]:
        return self.get("/_sim/stats")

    def cpu(self) -> float:
        """CPU seconds (user + system) the simulator process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def simulator(*args: str) -> Iterator[Simulator]:
    sim = Simulator(*args)
    try:
        yield sim
    finally:
        sim.stop()


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp:
        yield Path(tmp)


def prompts(n: int, tag: str = "") -> list[str]:
    """`n` distinct prompts (distinct bodies, so every job has its own key)."""
    subjects = ("a red fox", "an owl", "a lighthouse", "a paper boat", "a bowl of ramen")
    return [f"{subjects[i % len(subjects)]} {tag}#{i:06d}, soft light" for i in range(n)]


def write_manifest(path: Path, texts: list[str], *, options: dict[str, Any] | None = None) -> Path:
    """A YAML manifest of one job per prompt (written by hand: fast for 100,000 rows)."""
    lines = ["model: bytedance/seedream-5/lite/text-to-image"]
    lines.append('defaults: {resolution: "2048x2048 (1:1)", output_format: png}')
    if options:
        lines.append(f"options: {json.dumps(options)}")
    lines.append("jobs:")
    lines.extend(f"  - {json.dumps(t)}" for t in texts)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    return path


def module_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"benchmarks.{module}", *args]


def run_cmd(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [CLI, "run", str(manifest), "--out", str(out), "--no-progress", "--json", *extra]


def median_of(results: list[Timed], pick: Callable[[Timed], float]) -> float:
    return statistics.median(pick(r) for r in results)


def repeats(quick: bool) -> int:
    return 1 if quick else REPEATS


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (prints well on a terminal and pastes into RESULTS.md)."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = [f"### {title}", ""]
    for n, row in enumerate(cells):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(description: str, run: Callable[[bool], Any], report: Callable[[Any], str]) -> None:
    """Command line of one benchmark: run it (quick or full) and print its table."""
    args = parse_args(description)
    byte_compile()
    print(report(run(args.quick)), flush=True)


def byte_compile() -> None:
    """Compile the package once, as `pip install` does: a checkout run with
    PYTHONDONTWRITEBYTECODE set (this sandbox sets it) would otherwise compile every module
    in every timed start (~80 ms of benchmark 1's batch_runner run, none of the floor's)."""
    import compileall

    compileall.compile_dir(str(ROOT / "batch_runner"), quiet=1)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CI smoke test)")
    return parser.parse_args()


def mtimes_by_request(run_dir: Path) -> dict[str, float]:
    """request_id -> mtime of its (first) file, from the run's metadata.jsonl."""
    out: dict[str, float] = {}
    meta = run_dir / "metadata.jsonl"
    for line in meta.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        path = run_dir / row["file_name"]
        out.setdefault(row["request_id"], path.stat().st_mtime)
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
