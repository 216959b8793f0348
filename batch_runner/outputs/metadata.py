"""metadata.jsonl (one line per downloaded file, exactly once) and the text embedded in images.

A file in a folder that Hugging Face `datasets` reads as a split (a name template such as
`{split}/{slug}.{ext}` gives `images/train/...`) also gets its line in that folder's own
metadata.jsonl, `file_name` relative to the folder: with splits, the loader only reads metadata
files inside each split's folders, so the run directory's one file would be left out and every
column lost (CONTRACT §4). Only split folders get one: a metadata.jsonl in any other folder
would be read together with RUN_DIR's and every such file would load twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from batch_runner import jsonenc
from batch_runner.jobs import FileRecord, JobRecord, input_files, shown_input
from batch_runner.manifest.naming import split_word
from batch_runner.outputs.files import atomic_text
from batch_runner.outputs.media import FOLDERS, KINDS
from batch_runner.shards import is_shard_dir

METADATA_FILE = "metadata.jsonl"
# a shard's own lines: named apart, so the data set loader finds only the merged metadata.jsonl
# of RUN_DIR (with both, `imagefolder` would yield every file twice)
SHARD_METADATA_FILE = "shard-metadata.jsonl"
OUTPUT_DIRS = tuple(FOLDERS.values())  # images/, videos/, audio/ (CONTRACT §4)


def media_type(file_name: str) -> str:
    """image, video or audio: from the extension, which follows the file's sniffed content
    (files of runs from before turn 2 are images, or MP4/WebM videos under images/)."""
    return KINDS.get(file_name.rsplit(".", 1)[-1].lower(), "image")


def metadata_path(run_dir: Path) -> Path:
    """Where a run directory keeps its metadata lines (a shard's are merged by `merge`)."""
    return run_dir / (SHARD_METADATA_FILE if is_shard_dir(run_dir) else METADATA_FILE)


def split_folder(file_name: str) -> str | None:
    """The folder (relative to the run directory) whose own metadata.jsonl lists this file as
    well: the first folder under images/, videos/ or audio/ when `datasets` reads its name as
    a split ("train", "test", "validation"...), else None."""
    parts = file_name.split("/")
    for i, part in enumerate(parts[:-2]):  # a folder, then at least a file under it
        if part in OUTPUT_DIRS:
            return "/".join(parts[: i + 2]) if split_word(parts[i + 1]) else None
    return None


def folder_line(line: dict[str, Any], folder: str) -> dict[str, Any]:
    """A metadata line as a split folder's own file holds it: `file_name` relative to it."""
    return {**line, "file_name": line["file_name"][len(folder) + 1 :]}


def metadata_line(job: JobRecord, f: FileRecord, request_id: str | None) -> dict[str, Any]:
    """The metadata.jsonl object of one file (CONTRACT §4); `file_name` is relative to RUN_DIR."""
    line: dict[str, Any] = {
        "file_name": f.file_name,
        "key": job.key,
        "index": job.index,
        "k": f.k,
        "request_id": request_id,
        "model": job.model,
        "media_type": media_type(f.file_name),
    }
    if job.model_id is not None:
        line["model_id"] = job.model_id  # as /result named it
    if job.stage is not None:  # a pipeline's lineage (CONTRACT §4)
        line |= {"stage": job.stage, "parent_key": job.parent_key, "parent_file": job.parent_file}
    for name, value in job.inputs.items():
        line.setdefault(name, shown_input(value))  # a local file by its path, never its data
    inputs = input_files(job.inputs)
    if inputs:
        line["input_files"] = inputs
    for name, value in job.meta.items():
        line.setdefault(name, value)  # top level, so imagefolder shows them as columns
    if job.meta:
        line["meta"] = job.meta
    if job.vars:
        line["vars"] = job.vars
    line["sha256"] = f.sha256
    line["bytes"] = f.bytes
    line["job_cost_usd"] = job.cost_usd  # the whole job's, on each of its files (CONTRACT §4)
    if job.archived_from is not None:  # its files were taken from this run's --archive
        line["archived_from"] = job.archived_from
    if job.mark is not None:  # keep/reject from `serve` (unmarked files have no `mark`)
        line["mark"] = job.mark
    return line


class MetadataLog:
    """Appends lines to metadata.jsonl (and a split folder's own, `split_folder`) through open
    handles, flushed once per loop tick (at once outside an event loop), so readers see each
    line within a tick of its file.

    No fsync: the files are derived; a line lost in a crash makes a file's line count disagree
    with the state (`metadata_whole`), and they are rebuilt from the state on the next start.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = metadata_path(run_dir)
        self._files: dict[Path, TextIO] = {}
        self._flush_soon: asyncio.Handle | None = None

    def append(self, line: dict[str, Any]) -> None:
        self._write(self.path, jsonenc.text(line))
        folder = split_folder(line["file_name"])
        if folder is not None:
            self._write(
                self.run_dir / folder / METADATA_FILE, jsonenc.text(folder_line(line, folder))
            )
        if self._flush_soon is None:
            try:
                self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no event loop: flush now
                self._flush()

    def _write(self, path: Path, text: str) -> None:
        fh = self._files.get(path)
        if fh is None:
            fh = self._files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (close)
        fh.write(text + "\n")

    def _flush(self) -> None:
        self._flush_soon = None
        for fh in self._files.values():
            fh.flush()

    def close(self) -> None:
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        for fh in self._files.values():
            fh.close()
        self._files.clear()


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0


def count_metadata_lines(run_dir: Path) -> int:
    return _count_lines(metadata_path(run_dir))


def split_folders(run_dir: Path) -> Iterator[str]:
    """The split folders on disk (`split_folder`), relative to the run directory."""
    for media in OUTPUT_DIRS:
        try:
            entries = os.scandir(run_dir / media)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:  # d_type only: no stat of the (many) files beside the folders
            for entry in entries:
                if entry.is_dir() and split_word(entry.name):
                    yield f"{media}/{entry.name}"


def metadata_whole(run_dir: Path, files: int, files_under: Callable[[str], int]) -> bool:
    """Whether every metadata file has one line per file of the state: `files` in all, and
    `files_under(FOLDER + "/")` in each split folder's own."""
    if count_metadata_lines(run_dir) != files:
        return False
    return all(
        _count_lines(run_dir / folder / METADATA_FILE) == files_under(folder + "/")
        for folder in split_folders(run_dir)
    )


def rebuild_metadata(run_dir: Path, jobs: Iterable[JobRecord]) -> int:
    """Rewrite metadata.jsonl and each split folder's own from the state (each atomically, and
    durable before its rename); returns the number of lines of the run's own file."""
    n = 0
    stale = set(split_folders(run_dir))
    with contextlib.ExitStack() as stack:
        own: dict[str, TextIO] = {}
        fh = stack.enter_context(atomic_text(metadata_path(run_dir), durable=True))
        for job in jobs:
            rid = job.request_ids[-1] if job.request_ids else None
            for f in job.files:
                line = metadata_line(job, f, rid)
                fh.write(jsonenc.text(line) + "\n")
                n += 1
                folder = split_folder(f.file_name)
                if folder is None:
                    continue
                if folder not in own:
                    (run_dir / folder).mkdir(parents=True, exist_ok=True)
                    path = run_dir / folder / METADATA_FILE
                    own[folder] = stack.enter_context(atomic_text(path, durable=True))
                own[folder].write(jsonenc.text(folder_line(line, folder)) + "\n")
    for folder in stale - own.keys():  # no file of the state there any more
        with contextlib.suppress(FileNotFoundError):
            (run_dir / folder / METADATA_FILE).unlink()
    return n


def parameters_text(model: str, inputs: dict[str, Any]) -> str:
    """Prompt and settings in the `parameters` convention image tools read (prompt, then k: v)."""
    rest = ", ".join(f"{k}: {shown_input(v)}" for k, v in inputs.items() if k != "prompt")
    prompt = str(inputs.get("prompt", ""))
    return f"{prompt}\nModel: {model}" + (f", {rest}" if rest else "")
