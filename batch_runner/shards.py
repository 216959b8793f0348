"""Shards: one manifest run by many machines (CONTRACT §7).

A job's shard is a pure function of its key (sha256, never Python's salted `hash()`), so every
machine, Python version and later edit of the manifest puts a job in the same shard: shards are
disjoint, cover every job, and adding rows moves no job. Shard K of N runs in its own run
directory `RUN_DIR/shard-K-of-N/` (own state, lock, outputs, metadata).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_runner.errors import StateError, UsageError

K8S_INDEX_ENV = "JOB_COMPLETION_INDEX"  # Kubernetes Indexed Jobs
SLURM_ID_ENV, SLURM_MIN_ENV = "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN"  # Slurm job arrays
_DIR = re.compile(r"shard-(\d+)-of-(\d+)")
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True, order=True)
class Shard:
    k: int
    n: int

    @property
    def name(self) -> str:
        return f"shard-{self.k}-of-{self.n}"

    def holds(self, key: str) -> bool:
        return shard_of(key, self.n) == self.k

    def holds_job(self, job: Any) -> bool:
        """Whether the job (anything with a `key`) is in this shard."""
        return shard_of(job.key, self.n) == self.k


def shard_of(key: str, n: int) -> int:
    """Which of `n` shards the job with this key belongs to."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % n


def parse_shard(text: str, origin: str = "--shard") -> Shard:
    """`--shard K/N` (`origin` names where it was given, for the error)."""
    m = _SPEC.fullmatch(text)
    if not m:
        raise UsageError(f"{origin} must look like K/N (e.g. 0/4), got '{text}'")
    return checked(int(m[1]), int(m[2]), origin)


def checked(k: int, n: int, origin: str) -> Shard:
    if n < 1:
        raise UsageError(f"{origin}: the number of shards must be at least 1, got {n}")
    if not 0 <= k < n:
        raise UsageError(f"{origin}: shard {k} is not in 0..{n - 1}")
    return Shard(k, n)


def shard_from_env(
    n: int, environ: Mapping[str, str] | None = None, origin: str = "--shards"
) -> Shard:
    """`--shards N`: K from the Kubernetes completion index, else from the Slurm array task
    (`origin` names where N was given, for the errors)."""
    env = os.environ if environ is None else environ
    given = f"{origin} {n}"
    if env.get(K8S_INDEX_ENV, "").strip():
        return checked(_int(env, K8S_INDEX_ENV), n, f"{given} with {K8S_INDEX_ENV}")
    if env.get(SLURM_ID_ENV, "").strip():
        first = _int(env, SLURM_MIN_ENV) if env.get(SLURM_MIN_ENV, "").strip() else 0
        k = _int(env, SLURM_ID_ENV) - first
        return checked(k, n, f"{given} with {SLURM_ID_ENV} - {SLURM_MIN_ENV}")
    raise UsageError(
        f"{given}: neither {K8S_INDEX_ENV} (Kubernetes Indexed Job) nor {SLURM_ID_ENV} "
        "(Slurm job array) is set, so this process does not know its shard; "
        "use --shard K/N to pick one by hand"
    )


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name].strip())
    except ValueError:
        raise UsageError(f"{name} must be a whole number, got '{env[name]}'") from None


def shard_dirs(run_dir: Path) -> list[tuple[Shard, Path]]:
    """The shard directories under `run_dir`, in (N, K) order."""
    found = []
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            m = _DIR.fullmatch(child.name)
            if m and child.is_dir():
                found.append((Shard(int(m[1]), int(m[2])), child))
    return sorted(found, key=lambda item: (item[0].n, item[0].k))


def check_run_dir(run_dir: Path, shard: Shard | None, state_file: str) -> None:
    """Refuse to split a run directory's jobs twice: shards of another N, or a sharded folder
    used as a plain run (and the other way round)."""
    counts = sorted({s.n for s, _ in shard_dirs(run_dir)})
    if shard is None:
        if counts:
            raise UsageError(
                f"{run_dir} holds shards of {counts[0]} (shard-K-of-{counts[0]}/): run it with "
                f"--shards {counts[0]} or --shard K/{counts[0]}, or use another --out"
            )
        return
    if (run_dir / state_file).exists():
        raise UsageError(
            f"{run_dir} is a run directory without shards ({state_file}): "
            "sharding it would submit its jobs again; use another --out"
        )
    others = [n for n in counts if n != shard.n]
    if others:
        raise UsageError(
            f"{run_dir} holds shards of {others[0]} (shard-K-of-{others[0]}/), not {shard.n}: "
            "a different count would split the jobs twice; use the same N or another --out"
        )


def is_shard_dir(run_dir: Path) -> bool:
    return _DIR.fullmatch(Path(run_dir).name) is not None


def claim(run_dir: Path, shard: Shard, state_file: str) -> Path:
    """Create this shard's folder, then look again: of two processes started at once with
    different N, at least one sees the other's folder and refuses (maybe both: never neither)."""
    check_run_dir(run_dir, shard, state_file)
    folder = run_dir / shard.name
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"{folder}: cannot create the shard's folder ({exc.strerror})") from None
    try:
        check_run_dir(run_dir, shard, state_file)
    except UsageError:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return folder


def split_budget(total: float, n: int) -> float:
    """Each shard's share of `--max-cost-total`, rounded down to a micro-dollar: the shares
    never add up to more than the total."""
    return int(total * 1_000_000 / n) / 1_000_000
