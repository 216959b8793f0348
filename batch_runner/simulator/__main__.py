"""`python -m batch_runner.simulator [options]`: run the simulator in the foreground."""

from __future__ import annotations

import argparse
import sys

from batch_runner.errors import UsageError
from batch_runner.simulator.config import add_arguments, config_from_args
from batch_runner.simulator.server import run_foreground


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve until interrupted; exit 2 on a bad flag value."""
    parser = argparse.ArgumentParser(
        prog="python -m batch_runner.simulator", description="Run the RunComfy API simulator."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_foreground(config, args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
