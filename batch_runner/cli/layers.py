"""What a run directory remembers of the options it was run with, and which of a manifest's
`options:` a later run gives anew.

A run's settings are layered: the defaults < what the run directory remembers < the manifest's
`options:` that changed since the directory last ran it < the command line. So a flag given once
(`--max-cost 0.5`, `--no-balance-check`, `--retries 3`...) holds for every later `run MANIFEST`
and `resume` until another value is given (`--no-max-cost` drops a budget), and a manifest run
again unchanged does not undo what a flag set in between (README "Remembered options").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_runner.cli.sharding import ShardOptions
from batch_runner.errors import UsageError
from batch_runner.settings import default_run_dir
from batch_runner.store.state import STATE_FILE, StateStore

SETTINGS_META = "settings"  # the state file's meta rows this module reads
OPTIONS_META = "manifest_options"
_MISSING = object()


def plain(options: Mapping[Any, Any]) -> dict[str, Any]:
    """Manifest options as the state file keeps them: `-` in names as `_`, JSON values."""
    named = {str(k).replace("-", "_"): v for k, v in options.items()}
    return json.loads(json.dumps(named, default=str))


@dataclass(frozen=True)
class Remembered:
    settings: dict[str, Any] = field(default_factory=dict)  # RunSettings.stored() of the last run
    manifest_options: dict[str, Any] | None = None  # its manifest's options (None: not recorded)

    @classmethod
    def read(cls, run_dir: Path) -> Remembered:
        """What `run_dir` remembers; a new run directory remembers nothing."""
        if not (run_dir / STATE_FILE).is_file():
            return cls(manifest_options={})
        store = StateStore.open(run_dir, readonly=True)
        try:
            settings = store.get_meta(SETTINGS_META, {}) or {}
            return cls(settings, store.get_meta(OPTIONS_META))
        finally:
            store.close()

    def given(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest options (`plain`) given anew: each one whose value differs from the last
        run's; all of them when the last run's are not recorded (an older run directory)."""
        if self.manifest_options is None:
            return dict(options)
        last = self.manifest_options
        return {k: v for k, v in options.items() if last.get(k, _MISSING) != v}


def run_place(
    args: argparse.Namespace, options: dict[str, Any], shards: ShardOptions
) -> tuple[Path, Remembered, ShardOptions]:
    """Where `run` runs (--out, else the manifest's `out:`, else jobs/<manifest stem>), what
    that directory (its shard's folder when sharded) remembers, and the shard options with a
    `max_cost_total` only where it is given anew."""
    run_dir = args.out or Path(str(options.get("out") or ""))
    if not run_dir.parts:
        run_dir = default_run_dir(args.manifest)
        _check_same_stem(run_dir, args.manifest)
    shard = shards.which()
    remembered = Remembered.read(run_dir / shard.name if shard is not None else run_dir)
    return run_dir, remembered, _budget_given(shards, remembered.given(options))


def _budget_given(shards: ShardOptions, given: dict[str, Any]) -> ShardOptions:
    """A manifest's `max_cost_total` splits the budget again only when it changed since the
    last run: an unchanged one leaves the budget each shard remembers (maybe raised since)."""
    where = shards.origin.get("max_cost_total", "")
    if shards.max_cost_total is None or where.startswith("--") or "max_cost_total" in given:
        return shards
    return dataclasses.replace(shards, max_cost_total=None)


def _check_same_stem(run_dir: Path, manifest: Path) -> None:
    """jobs/<stem> is named for the manifest's file name only: another manifest of the same
    name must not slip its jobs into this run (and be billed as one run)."""
    if not (run_dir / STATE_FILE).is_file():
        return
    store = StateStore.open(run_dir, readonly=True)
    try:
        other = store.get_meta("manifest_path") or store.get_meta("manifest")
    finally:
        store.close()
    if other and Path(other).resolve() != manifest.resolve():
        raise UsageError(
            f"{run_dir} holds the run of another manifest with the same name ({other}); "
            f"give this one its own run directory with --out DIR"
        )
