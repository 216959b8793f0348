"""WebDataset shards: `00000.tar`, `00001.tar`, ... each holding samples as `KEY.EXT` (the
file) + `KEY.json` (its metadata.jsonl line), at most `shard_bytes` per tar (a single sample
bigger than that gets a shard of its own).

Two exports of one run are byte-identical: samples in job order, fixed member metadata (mtime,
owner, mode), JSON with sorted keys. GNU tar headers (PAX headers cost half the export's time
on small files). Files stream from disk into the tar (`addfile` copies in chunks), so a big
video never sits in memory whole.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_runner.exports.samples import Sample
from batch_runner.exports.shardfiles import ShardFiles

SUFFIX = "tar"
# the end of a tar: two zero blocks, then padding to a whole record
_END = 2 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode


@dataclass
class ShardInfo:
    name: str
    samples: int
    bytes: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes}


class WebDatasetSampleWriter:
    def __init__(self, folder: Path, shard_bytes: int):
        self.shard_bytes = shard_bytes
        self.shards: list[ShardInfo] = []
        self._files = ShardFiles(folder, SUFFIX)
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def write(self, sample: Sample) -> None:
        meta = _encode(sample.line()).encode()
        with sample.open() as fh:
            size = os.fstat(fh.fileno()).st_size
            need = _member(size) + _member(len(meta))
            if self._tar is not None and self._tar.offset + need + _END > self.shard_bytes:
                self._finish_shard()
            tar = self._tar or self._start_shard()
            tar.addfile(_info(f"{sample.key}.{sample.ext}", size), fh)
        tar.addfile(_info(f"{sample.key}.json", len(meta)), io.BytesIO(meta))
        tar.members.clear()  # TarFile keeps every member written: memory would grow per file
        self._count += 1

    def close(self) -> list[ShardInfo]:
        """Finish the last shard, remove shards an earlier export left beyond this one's."""
        if self._tar is not None:
            self._finish_shard()
        self._files.folder.mkdir(parents=True, exist_ok=True)  # an empty run: an empty folder
        self._files.remove_stale()
        return self.shards

    def abort(self) -> None:
        """Stop without a partial shard: the shards already finished stay."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        self._files.discard()

    def _start_shard(self) -> tarfile.TarFile:
        # closed in _finish_shard (or abort)
        self._tar = tarfile.open(self._files.start(), "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115
        self._count = 0
        return self._tar

    def _finish_shard(self) -> None:
        assert self._tar is not None
        self._tar.close()
        self._tar = None
        path = self._files.commit()
        self.shards.append(ShardInfo(path.name, self._count, path.stat().st_size))


def _member(size: int) -> int:
    """Bytes one member takes in the tar: its header block and its data padded to blocks."""
    return tarfile.BLOCKSIZE + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _info(name: str, size: int) -> tarfile.TarInfo:
    # fixed metadata, so the same run gives the same bytes on every export and machine
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
