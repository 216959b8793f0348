"""`--archive FILE`: never pay twice for a job across runs on one machine.

Before anything is priced or planned (`take_archived`), each pending job whose key the archive
holds gets its files from the archived run directory, hard-linked (copied across file
systems), each checked against its sha256, under the name this run gives it; the job is then
`done` in this state, never submitted, never estimated or budgeted. An entry with a file
missing or changed is not trusted: it is dropped and the job runs. When the run ends
(`archive_finished`), every done job of the directory goes into the archive: over an older
entry when this run finished it, else only where the key is new.

A job taken earlier whose files went missing here is sent back to `pending` (without an
archive, it is then submitted like any job; with one, it is taken again if it can be).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_runner.errors import DownloadError, UsageError
from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.money import archive_text, usd
from batch_runner.outputs.download import final_path
from batch_runner.outputs.files import part_path
from batch_runner.outputs.media import KINDS, folder_of
from batch_runner.outputs.metadata import MetadataLog, media_type, metadata_line, rebuild_metadata
from batch_runner.run.children import Children
from batch_runner.run.file_names import FileNames
from batch_runner.settings import RunSettings
from batch_runner.store.archive import Archive, ArchivedFile, Entry
from batch_runner.store.state import StateStore
from batch_runner.words import plural

S = JobState
MISSING_REASON = "its files from the archive are missing here; it runs again"
_COPY_ERRORS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}
_BLOCK = 1 << 20


@dataclass
class ArchiveRun:
    """What `take_archived` leaves for `archive_finished`: the archive and the done jobs
    before this run (the others this run finished)."""

    path: Path | None
    done_before: set[int] = field(default_factory=set)
    untrusted: int = 0
    # the jobs taken by this run and the money not spent on them (store/archived.py's shape)
    saved: dict[str, Any] = field(
        default_factory=lambda: {"jobs": 0, "not_spent_usd": 0.0, "estimated": 0, "unknown": 0}
    )

    def count(self, entry: Entry) -> None:
        self.saved["jobs"] += 1
        money = entry.cost_usd if entry.cost_usd is not None else entry.estimate_usd
        if money is None:
            self.saved["unknown"] += 1
        else:
            self.saved["not_spent_usd"] = usd(self.saved["not_spent_usd"] + money)
            self.saved["estimated"] += entry.cost_usd is None


def take_archived(store: StateStore, run_dir: Path, settings: RunSettings) -> ArchiveRun:
    """Jobs taken from the archive before the run plans or prices anything (see above)."""
    path = Path(settings.archive) if settings.archive else None
    run = ArchiveRun(path)
    forgotten = _forget_missing(store, run_dir)
    if path is not None:
        with Archive.open(path) as archive:
            _take(store, run_dir, settings, archive, run)
    if forgotten:
        rebuild_metadata(run_dir, store.iter_jobs())  # their lines went with their files
        _say(
            f"{plural(forgotten, 'job')} taken from an archive earlier without "
            f"{'its' if forgotten == 1 else 'their'} files here now: "
            + ("taken again where the archive has them, else run" if path else "run again")
        )
    if path is not None:
        run.done_before = store.done_indexes()
    if run.saved["jobs"] or run.untrusted:
        _say(_taken_line(run))
    return run


def archive_finished(run: ArchiveRun, store: StateStore, run_dir: Path) -> None:
    """Every done job of the run directory into the archive (short transactions)."""
    if run.path is None:
        return
    root = str(run_dir.resolve())
    fresh: list[Entry] = []
    older: list[Entry] = []
    for job in store.iter_jobs():
        if job.state is not S.DONE or job.archived_from is not None or not _on_disk(run_dir, job):
            continue
        entry = _entry(job, root)
        (older if job.index in run.done_before else fresh).append(entry)
    try:
        with Archive.open(run.path) as archive:
            archive.add(fresh, replace=True)
            archive.add(older, replace=False)
    except UsageError as exc:  # the run itself is whole: say so, never fail it for this
        _say(f"warning: {exc}; the jobs go into the archive with a later run of this directory")


def _take(
    store: StateStore, run_dir: Path, settings: RunSettings, archive: Archive, run: ArchiveRun
) -> None:
    """Every pending job the archive holds, taken; in a pipeline, the children of the jobs
    taken are made at once (before anything is planned, so those the archive lacks run in
    this run) and taken in turn where the archive holds them, stage after stage."""
    children = Children.of(store)
    metadata = MetadataLog(run_dir)
    try:
        pending = [job for job in store.iter_jobs(with_files=False) if job.state is S.PENDING]
        while pending:
            taken: list[JobRecord] = []
            for start in range(0, len(pending), 500):
                batch = pending[start : start + 500]
                taken += _take_batch(
                    store, run_dir, settings, archive, run, metadata, batch, children
                )
            pending = _children_of(children, store, taken) if children is not None else []
    finally:
        metadata.close()


def _take_batch(
    store: StateStore,
    run_dir: Path,
    settings: RunSettings,
    archive: Archive,
    run: ArchiveRun,
    metadata: MetadataLog,
    batch: list[JobRecord],
    children: Children | None,
) -> list[JobRecord]:
    """The jobs of `batch` the archive holds with their files whole, done; returns them
    (`children`: the run's stages, which say where a stage's files go)."""
    taken: list[JobRecord] = []
    entries = archive.lookup([job.key for job in batch])
    for job in batch:
        entry = entries.get(job.key)
        if entry is None:
            continue
        n = len(entry.files)
        names = FileNames.of(settings.name_template, job, n, store.job_by_key, children)
        files = _place(entry, names, run_dir)
        if files is None:
            archive.drop(entry)  # not trusted: the job runs, and replaces it when done
            run.untrusted += 1
            continue
        job.move(S.DONE)
        source = (entry.run_dir, entry.request_id)
        store.record_archived(
            job.index, job.state, source, files, (entry.cost_usd, entry.estimate_usd)
        )
        job.files, (job.archived_from, job.archived_request_id) = files, source
        rid = job.request_ids[-1] if job.request_ids else None  # as a rebuild says
        for record in files:
            metadata.append(metadata_line(job, record, rid))
        run.count(entry)
        taken.append(job)
    return taken


def _children_of(
    children: Children, store: StateStore, parents: list[JobRecord]
) -> list[JobRecord]:
    """The children of parents just taken, made now (once: a child's key derives from its
    parent's); returns those pending, to be taken from the archive in turn."""
    keys = [key for parent in parents for key in children.create(parent, parent.files)]
    store.flush()
    found: list[int] = []
    for start in range(0, len(keys), 500):
        found += [idx for idx, _ in store.pending_keys(keys[start : start + 500])]
    found.sort()
    return [
        job
        for start in range(0, len(found), 500)
        for job in store.jobs_at(found[start : start + 500])
    ]


def _place(entry: Entry, names: FileNames, run_dir: Path) -> list[FileRecord] | None:
    """The entry's files linked (or copied) in under this run's names, each checked against
    its sha256 before it takes its final name; None (nothing left behind) when one is
    missing or changed."""
    placed: list[tuple[str, Path]] = []
    records: list[FileRecord] = []
    try:
        for k, f in enumerate(entry.files, 1):
            name = _local_name(f, names, k, run_dir)
            if name is None:
                return None
            final = run_dir / name
            part = part_path(final)
            placed.append((part, final))
            if not _link_or_copy(Path(entry.run_dir) / f.file_name, final, part):
                return None
            sha, size = _digest(part)
            if (sha, size) != (f.sha256, f.bytes):
                return None
            records.append(FileRecord(name, k, sha, size, f.url))
        for part, final in placed:
            os.replace(part, final)
        placed.clear()
        return records or None
    finally:
        for part, _ in placed:
            _unlink(part)


def _local_name(f: ArchivedFile, names: FileNames, k: int, run_dir: Path) -> str | None:
    """Where this run puts the file: where a download of it would go (run/file_names.py,
    outputs/download.py), by type and this run's name template (None for a name outside
    its folder: never for first stages, whose names are checked when the manifest loads)."""
    ext = f.file_name.rsplit(".", 1)[-1].lower()
    if ext not in KINDS:
        ext = "png"
    folder = folder_of(ext)
    try:
        _, relative = final_path(names.base(run_dir) / folder, names.name(k, ext))
    except DownloadError:
        return None
    return names.recorded(f"{folder}/{relative}")


def _link_or_copy(source: Path, final: Path, part: str) -> bool:
    """`source` at `part` (a hard link, else a copy); False when it is gone."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, part)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno not in _COPY_ERRORS:
            raise
    try:
        shutil.copyfile(source, part)
    except FileNotFoundError:
        return False
    return True


def _digest(path: str) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _forget_missing(store: StateStore, run_dir: Path) -> int:
    """Jobs taken from an archive earlier whose files are no longer all here: pending again."""
    forgotten = 0
    done = store.archived_done()
    for start in range(0, len(done), 500):
        for job in store.jobs_at(done[start : start + 500]):
            if _on_disk(run_dir, job):
                continue
            job.move(S.DOWNLOADING)  # its files are fetched again: from the archive, or anew
            job.move(S.PENDING, MISSING_REASON)
            store.forget_archived(job.index, job.state, MISSING_REASON)
            forgotten += 1
    return forgotten


def _on_disk(run_dir: Path, job: JobRecord) -> bool:
    if not job.files:
        return False
    for f in job.files:
        try:
            if (run_dir / f.file_name).stat().st_size != f.bytes:
                return False
        except OSError:
            return False
    return True


def _entry(job: JobRecord, root: str) -> Entry:
    files = tuple(
        ArchivedFile(f.file_name, f.sha256, f.bytes, media_type(f.file_name), f.url)
        for f in job.files
    )
    rid = job.request_ids[-1] if job.request_ids else None
    return Entry(job.key, root, job.model, files, job.cost_usd, job.estimate_usd, rid, time.time())


def _taken_line(run: ArchiveRun) -> str:
    """ "12 from the archive, $0.36 not spent" (and the entries not trusted)."""
    parts = [archive_text(run.saved)] if run.saved["jobs"] else []
    if run.untrusted:
        parts.append(
            f"{plural(run.untrusted, 'archived job')} not trusted (a file missing or changed): "
            f"{'it runs' if run.untrusted == 1 else 'they run'}"
        )
    return "; ".join(parts)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
