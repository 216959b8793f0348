"""Parquet: the CSV/JSONL export's columns (one row per file) plus the file's bytes, in one file
or in numbered shards of about `shard_bytes` each.

Images go in an `image` column stored as the Hugging Face `datasets` Image feature stores them
(a struct {bytes: binary, path: string}, named in the schema metadata under b"huggingface"),
so `load_dataset("parquet", data_files=...)` decodes them as images. Videos and audio go in
`video` / `audio` columns of the same struct, without a feature: bytes and file name (the type
is the `media_type` column and the extension), loadable anywhere; `cast_column("video",
Video())` decodes them where a video decoder is installed. Rows are written a row group at a
time (bounded in bytes and rows), so memory stays flat however many files there are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch_runner.errors import StateError
from batch_runner.exports.samples import Sample
from batch_runner.exports.shardfiles import OneFile, ShardFiles
from batch_runner.report.export import RESERVED, columns

SUFFIX = "parquet"
MEDIA_COLUMNS = {"image": "image", "video": "video", "audio": "audio"}  # media_type -> column
# an input named like a media column is exported as inputs.NAME, as for the fixed columns
ROW_RESERVED = RESERVED | frozenset(MEDIA_COLUMNS.values())
FILE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets' Image storage
# columns whose type is known whatever the values (all empty would say nothing)
_FIXED = {"index": pa.int64(), "bytes": pa.int64(), "job_cost_usd": pa.float64()}
# a row group is flushed at this many media bytes or rows, whichever comes first
ROW_GROUP_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 1000
_INT64 = (-(2**63), 2**63 - 1)
_text = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode


@dataclass(frozen=True)
class Plan:
    """The schema of an export, and which columns hold text for values of other types."""

    schema: pa.Schema
    text: frozenset[str]  # string columns: lists, mappings, mixed types as JSON text
    media: tuple[str, ...]  # the media columns present (image first)


def plan(samples: Iterable[Sample]) -> Plan:
    """One pass over the samples' rows (no bytes read): the union of their columns in the
    CSV export's order, each with one type (bool, int64, float64, or string)."""
    seen: dict[str, set[type]] = {}
    kinds: set[str] = set()
    for sample in samples:
        kinds.add(MEDIA_COLUMNS[sample.media_type])
        for name, value in sample.row(ROW_RESERVED).items():
            types = seen.setdefault(name, set())
            if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
                types.add(str)  # too big for int64: kept whole as text
            elif value is not None:
                types.add(type(value))
    media = tuple(name for name in MEDIA_COLUMNS.values() if name in kinds)
    fields = [pa.field(name, FILE_TYPE) for name in media]
    text = set()
    for name in columns([seen]):  # the fixed columns even when there is no sample
        kind = _FIXED.get(name) or _arrow_type(seen.get(name, set()))
        if kind == pa.string():
            text.add(name)
        fields.append(pa.field(name, kind))
    schema = pa.schema(fields)
    if "image" in media:
        features = {"info": {"features": {"image": {"_type": "Image"}}}}
        schema = schema.with_metadata({"huggingface": json.dumps(features)})
    return Plan(schema, frozenset(text), media)


def _arrow_type(types: set[type]) -> pa.DataType:
    if types == {bool}:
        return pa.bool_()
    if types == {int}:
        return pa.int64()
    if types and types <= {int, float}:
        return pa.float64()
    return pa.string()  # text, or anything else as JSON text


class ParquetSampleWriter:
    """Rows into `target`: one file, or with `shard_bytes` a folder of `NNNNN.parquet` of about
    that many bytes each (a shard is closed before a file would take it past the bound)."""

    def __init__(self, target: Path, layout: Plan, shard_bytes: int | None = None):
        self.plan = layout
        self.shard_bytes = shard_bytes
        self._files = ShardFiles(target, SUFFIX) if shard_bytes else OneFile(target)
        self._writer: pq.ParquetWriter | None = None
        self._fh: Any = None
        self._rows: list[dict[str, Any]] = []
        self._buffered = 0  # media bytes in self._rows
        self._in_shard = 0  # rows in the open shard, written or buffered
        self.counts: list[int] = []  # rows per finished shard

    def write(self, sample: Sample) -> None:
        data = sample.read()
        if self.shard_bytes and self._in_shard and self._size() + len(data) > self.shard_bytes:
            self._finish_shard()
        row = self._row(sample)
        row[MEDIA_COLUMNS[sample.media_type]] = {"bytes": data, "path": sample.file.file_name}
        self._rows.append(row)
        self._buffered += len(data)
        self._in_shard += 1
        if self._buffered >= ROW_GROUP_BYTES or len(self._rows) >= ROW_GROUP_ROWS:
            self._flush()

    def close(self) -> list[Path]:
        """Finish the last shard (an empty export is one file with no rows, so it loads)."""
        if self._rows or self._writer is not None or not self._files.done:
            self._finish_shard()
        self._files.remove_stale()
        return self._files.done

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._fh.close()
            self._writer = None
        self._files.discard()

    def _row(self, sample: Sample) -> dict[str, Any]:
        row = sample.row(ROW_RESERVED)
        for name in self.plan.text:
            value = row.get(name)
            if value is not None and not isinstance(value, str):
                row[name] = _text(value)
        return row

    def _size(self) -> int:
        written = self._fh.tell() if self._fh is not None else 0
        return written + self._buffered

    def _flush(self) -> None:
        writer = self._writer or self._open()
        if self._rows:
            try:
                table = pa.Table.from_pylist(self._rows, schema=self.plan.schema)
            except (pa.ArrowException, OverflowError) as exc:
                # the columns come from a first pass: a run writing meanwhile can add a value
                # of another type (the export reads a live run as it is)
                raise StateError(
                    f"{self._files.part}: a value does not fit its column ({exc}); did the run "
                    "change during the export? Export again once it is finished"
                ) from None
            writer.write_table(table, row_group_size=len(self._rows))
        self._rows, self._buffered = [], 0

    def _open(self) -> pq.ParquetWriter:
        self._fh = open(self._files.start(), "wb")  # noqa: SIM115 (closed in _finish_shard)
        schema = self.plan.schema
        self._writer = pq.ParquetWriter(
            self._fh,
            schema,
            compression=_compression(schema, self.plan.media),
            write_statistics=[p for p in _leaves(schema) if not _is_media(p, self.plan.media)],
        )
        return self._writer

    def _finish_shard(self) -> None:
        self._flush()
        assert self._writer is not None
        self._writer.close()
        self._fh.close()
        self._writer = self._fh = None
        self._files.commit()
        self.counts.append(self._in_shard)
        self._in_shard = 0


def _leaves(schema: pa.Schema) -> list[str]:
    """Column paths as parquet names them (a struct's fields as `image.bytes`)."""
    out = []
    for f in schema:
        if pa.types.is_struct(f.type):
            out += [f"{f.name}.{child.name}" for child in f.type]
        else:
            out.append(f.name)
    return out


def _is_media(path: str, media: tuple[str, ...]) -> bool:
    return path.endswith(".bytes") and path.split(".", 1)[0] in media


def _compression(schema: pa.Schema, media: tuple[str, ...]) -> dict[str, str]:
    # media bytes are compressed already (PNG, JPEG, MP4, ...): storing them as they are
    # saves the time a second compression would spend for nothing
    return {p: "none" if _is_media(p, media) else "snappy" for p in _leaves(schema)}
