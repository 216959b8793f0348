"""`{run: DIR}` in a media field (CONTRACT §3 Pipelines): an axis over the finished outputs of
another run directory, as `{from: STAGE}` is over an earlier stage's.

The other run is finished, so its files are known now: the children are counted exactly (not
"up to") and made before the first submit (run/run_axis.py), each sent the file's URL as the
API returned it, with the same lineage and URL refresh as a `{from:}` child. DIR is relative
to the manifest's folder. A plain `jobs:`/`sweep:` manifest with a `{run:}` field is read as a
one-stage pipeline named after DIR whose files stay in RUN_DIR/images|videos|audio/ (`flat`).

Reading the other run's state file is not this room's business: `load_jobs` is given a reader
(`ReadRun`, from run/run_axis.py) and this module only checks what it says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_runner.errors import ManifestError, Problem
from batch_runner.manifest.read_txt import TextEntries
from batch_runner.manifest.rows import Manifest
from batch_runner.manifest.stage_sources import Source


@dataclass(frozen=True)
class RunFile:
    """One output file of a done job of another run directory."""

    parent_key: str
    k: int
    file_name: str  # relative to that run directory
    kind: str  # image, video or audio


# a run directory -> its done jobs' files, or why it cannot be read
ReadRun = Callable[[Path], "list[RunFile] | str"]


def is_run(value: Any) -> bool:
    return isinstance(value, dict) and "run" in value


def run_dir(value: dict[str, Any], manifest_path: Path) -> Path | str:
    """The directory a `{run: DIR}` names (relative to the manifest's folder), or a problem."""
    extra = set(value) - {"run", "first"}
    if extra:
        return f"{{run:}} takes run and first, not {sorted(extra)}"
    if not isinstance(value.get("first", False), bool):
        return f"first: must be true or false, not {value['first']!r}"
    where = value["run"]
    if not isinstance(where, str) or not where.strip():
        return f"{{run:}} takes a run directory, not {where!r}"
    path = Path(where).expanduser()
    return (path if path.is_absolute() else manifest_path.parent / path).resolve()


def run_source(
    value: dict[str, Any], line: int | None, field: str, manifest_path: Path, seen: Source | None
) -> Source | str:
    """A stage's `{run: DIR}` field as a Source (its `stage`: the directory), or a problem: a
    stage has one `{run:}` field (`seen`: the one found already), the same in all its jobs."""
    found = run_dir(value, manifest_path)
    if isinstance(found, str):
        return found
    source = Source(field, str(found), bool(value.get("first", False)), line)
    if seen is None or (seen.field, seen.stage, seen.first) == (field, source.stage, source.first):
        return seen or source
    was = f"{seen.field}: {{run: {seen.stage}{', first: true' if seen.first else ''}}}"
    return f"the jobs take one {{run:}} field, the same in each (line {seen.line}: {was})"


def mixed(source: Source, run: Source) -> str:
    """The problem of a `{from:}` field in a stage that has a `{run:}` field."""
    return (
        f"{{from: {source.stage}}} and {{run:}} (line {run.line}: {run.field}) in one stage: "
        "a {run:} stage's children come from another run directory's jobs, so its chain starts "
        "there (take the earlier stage's files in a stage of their own)"
    )


def plain_with_run(manifest: Manifest) -> Path | None:
    """A plain manifest's first `{run:}` directory (None: it has none, or it is a pipeline)."""
    if manifest.stages or isinstance(manifest.entries, TextEntries):
        return None
    for entry in manifest.entries:
        if isinstance(entry.data, dict):
            for value in entry.data.values():
                if is_run(value):
                    found = run_dir(value, manifest.path)
                    return found if isinstance(found, Path) else Path(str(value.get("run")))
    return None


def runless(manifest: Manifest) -> list[Problem]:
    """A plain manifest's entries without a `{run:}` field next to entries with one: each a
    problem (they would be made children of the other run's files; `stages:` holds both)."""
    runs = [e for e in manifest.entries if _has_run(e.data)]
    if not runs:
        return []
    msg = (
        f"no {{run:}} field, but the entry at line {runs[0].source.line} has one: in a plain "
        "manifest every entry takes another run's files or none does (put the other jobs in "
        "a stage of their own under stages:)"
    )
    return [
        Problem(e.source.file, e.source.line, None, msg) for e in manifest.entries if e not in runs
    ]


def _has_run(data: Any) -> bool:
    return isinstance(data, dict) and any(is_run(v) for v in data.values())


def plain_problems(exc: ManifestError) -> ManifestError:
    """A plain manifest's problems without the stage it was read as."""
    return ManifestError([dataclasses.replace(p, stage=None) for p in exc.problems])


def count_files(plans: Iterable[Any], read: ReadRun | None) -> tuple[list[Any], list[Problem]]:
    """Each `{run:}` stage plan with its parents' files counted (its field's kind only; each
    job's first with `first: true`); a problem for a directory that cannot be read or has no
    such file. Other plans unchanged."""
    out: list[Any] = []
    problems: list[Problem] = []
    for plan in plans:
        if plan.run is None:
            out.append(plan)
            continue
        file, line = plan.where

        def problem(message: str, plan: Any = plan, file: str = file, line: Any = line) -> None:
            stage = None if plan.flat else plan.name
            problems.append(Problem(file, line, plan.field, message, None, stage))

        found = read(Path(plan.run)) if read is not None else "other runs are not read here"
        if isinstance(found, str):
            problem(found)
            continue
        files = chosen(found, plan.kind, plan.first)
        if not files:
            kinds = sorted({f.kind for f in found})
            has = f"only {' and '.join(kinds)} files" if kinds else "no finished outputs"
            problem(f"{{run: {plan.run}}}: no finished {plan.kind or 'output'} files ({has})")
            continue
        out.append(dataclasses.replace(plan, files=tuple(f.file_name for f in files)))
    return out, problems


def chosen(files: Iterable[RunFile], kind: str | None, first: bool) -> list[RunFile]:
    """The files children are made of: of the field's kind; only each job's first with `first`."""
    out: list[RunFile] = []
    seen: set[str] = set()
    for f in sorted(files, key=lambda f: (f.parent_key, f.k)):
        if kind is not None and f.kind != kind:
            continue
        if first and f.parent_key in seen:
            continue
        seen.add(f.parent_key)
        out.append(f)
    return out
