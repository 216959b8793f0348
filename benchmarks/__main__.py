"""Run all twelve benchmarks and print their tables: `python -m benchmarks [--quick] [--only N]`."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

from benchmarks import (
    bigfiles,
    concurrency,
    eta,
    exports,
    file_io,
    media,
    overhead,
    pipeline_streaming,
    polling,
    scale,
    scale_grid,
    shards,
)
from benchmarks import common as c

BENCHMARKS = {
    "1": overhead,
    "2": concurrency,
    "3": polling,
    "4": scale,
    "5": bigfiles,
    "6": scale_grid,
    "7": shards,
    "8": media,
    "9": file_io,
    "10": eta,
    "11": pipeline_streaming,
    "12": exports,
}


def machine() -> str:
    """nproc, CPU model, Python and OS: the facts RESULTS.md records."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}; commit {commit or '?'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CI smoke test)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS, key=int), help="benchmark N"
    )
    args = parser.parse_args()
    print(machine() + "\n", flush=True)
    c.byte_compile()
    started = time.perf_counter()
    for key in args.only or sorted(BENCHMARKS, key=int):
        module = BENCHMARKS[key]
        t0 = time.perf_counter()
        print(module.report(module.run(args.quick)), flush=True)
        print(f"(benchmark {key} took {time.perf_counter() - t0:.0f} s)\n", flush=True)
    print(f"all done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
