"""Numbered shard files in an export folder (`00000.tar`, `00001.parquet`, ...): each written
beside its final name and renamed when complete (a shard appears only whole), and the shards
of an earlier, longer export of the same folder removed at the end."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from batch_runner.outputs.files import part_path


class ShardFiles:
    """Hands out `DIR/NNNNN.<suffix>` names one at a time, each first as a part file."""

    def __init__(self, folder: Path, suffix: str):
        self.folder = folder
        self.suffix = suffix
        self.done: list[Path] = []
        self.part: str | None = None
        self._final: Path | None = None

    def start(self) -> str:
        """The part file the next shard is written to (its folder created)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._final = self.folder / f"{len(self.done):05d}.{self.suffix}"
        self.part = part_path(self._final)
        return self.part

    def commit(self) -> Path:
        """Rename the shard written to its final name."""
        assert self.part is not None and self._final is not None
        os.replace(self.part, self._final)
        self.done.append(self._final)
        self.part = self._final = None
        return self.done[-1]

    def discard(self) -> None:
        """Remove a shard cut short (an error or an interrupt while writing it)."""
        if self.part is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part)
            self.part = self._final = None

    def remove_stale(self) -> list[Path]:
        """Remove numbered shards this export did not write (left by an earlier export with
        more shards), so the folder holds this export and nothing else of ours."""
        pattern = re.compile(rf"\d{{5,}}\.{re.escape(self.suffix)}")
        stale = [
            p
            for p in sorted(self.folder.iterdir())
            if pattern.fullmatch(p.name) and p not in self.done
        ]
        for path in stale:
            path.unlink()
        return stale


class OneFile:
    """`ShardFiles`' shape for an export to a single file: `final` itself, written as a part
    file and renamed over it when complete."""

    def __init__(self, final: Path):
        self.final = final
        self.part: str | None = None
        self.done: list[Path] = []

    def start(self) -> str:
        if self.done:
            raise ValueError(f"{self.final}: one file, written once")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.part = part_path(self.final)
        return self.part

    def commit(self) -> Path:
        assert self.part is not None
        os.replace(self.part, self.final)
        self.part = None
        self.done.append(self.final)
        return self.final

    def discard(self) -> None:
        if self.part is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part)
            self.part = None

    def remove_stale(self) -> list[Path]:
        return []
