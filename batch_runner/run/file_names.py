"""Where a job's files go in its run directory and under which names (CONTRACT §4): the one
place for a job whose files are downloaded (run/job_download.py) and for one whose files are
taken from an `--archive` (run/archived.py), so both land at
`RUN_DIR[/STAGE]/images|videos|audio/NAME`, NAME from the name template (a pipeline's
`{STAGE.NAME}` read from the job's ancestors)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch_runner.jobs import JobRecord
from batch_runner.manifest.naming import DEFAULT_TEMPLATE, job_file_name

if TYPE_CHECKING:
    from batch_runner.run.children import Children

JobByKey = Callable[[str], JobRecord | None]  # a job by its key (StateStore.job_by_key)


def ancestry(job: JobRecord, job_by_key: JobByKey) -> dict[str, dict[str, Any]]:
    """Each ancestor's values by stage (meta, inputs, vars), for `{STAGE.NAME}` in names."""
    out: dict[str, dict[str, Any]] = {}
    parent = job_by_key(job.parent_key) if job.parent_key else None
    while parent is not None and parent.stage and parent.stage not in out:
        out[parent.stage] = {**parent.meta, **parent.inputs, **parent.vars}
        parent = job_by_key(parent.parent_key) if parent.parent_key else None
    return out


@dataclass(frozen=True)
class FileNames:
    """The names of one job's `n_files` files."""

    template: str
    job: JobRecord
    n_files: int
    folder: str | None  # its stage's folder of RUN_DIR (None: RUN_DIR itself)
    ancestors: dict[str, dict[str, Any]] | None = None

    @classmethod
    def of(
        cls,
        template: str | None,
        job: JobRecord,
        n_files: int,
        job_by_key: JobByKey,
        children: Children | None,
    ) -> FileNames:
        """`children`: the run's stage plans (a `{run:}` stage of a plain manifest has no
        folder of its own: Children.folder)."""
        template = template or DEFAULT_TEMPLATE
        ancestors = None  # a pipeline's {STAGE.NAME} in the template
        if "." in template and job.parent_key:
            ancestors = ancestry(job, job_by_key)
        folder = children.folder(job) if children is not None else job.stage
        return cls(template, job, n_files, folder, ancestors)

    def name(self, k: int, ext: str) -> str:
        """File number `k`'s name within its media folder (images/, videos/, audio/)."""
        job = self.job
        return job_file_name(
            self.template,
            job,
            index=job.index,
            k=k,
            n_files=self.n_files,
            ext=ext,
            ancestors=self.ancestors,
        )

    def base(self, run_dir: Path) -> Path:
        """The folder its media folders are in: RUN_DIR, or RUN_DIR/STAGE in a pipeline."""
        return run_dir / self.folder if self.folder else run_dir

    def recorded(self, relative: str) -> str:
        """The file's name as the state and metadata.jsonl record it (relative to RUN_DIR),
        from its name relative to `base` (e.g. "images/00001-fox.png")."""
        return f"{self.folder}/{relative}" if self.folder else relative
