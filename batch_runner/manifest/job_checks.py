"""Every check of a manifest's jobs in one pass, as they are made (manifest/load.py): schema,
refused models, media inputs (local files become references), meta fields, prompts, output
names. What a check keeps grows with the problems found and the models and fields used, not
with the jobs, except the output names: one 64-bit digest each (digests.py)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping

from batch_runner.digests import DigestMap, digest
from batch_runner.errors import Problem, UsageError
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.media_jobs import MediaCheck
from batch_runner.manifest.meta import MetaCheck
from batch_runner.manifest.naming import job_file_name
from batch_runner.manifest.prompts import PromptCheck
from batch_runner.manifest.schema import JobsCheck

Lines = dict[Location, dict[str, int]]  # an entry's source -> the line of each of its fields


class JobChecks:
    """The checks of load_jobs over a stream of jobs; `run` yields each job as checked (its
    local files as references). `refused`: model -> why it cannot run; `top`: where a job
    whose model is refused and named nowhere in its entry reports it (the manifest's own
    `model:` line, or None for --model); `tally`: told of each job as checked."""

    def __init__(
        self,
        schema: JobsCheck,
        media: MediaCheck,
        lines: Lines,
        refused: Mapping[str, str],
        top: tuple[str, int | None, str],  # (file, line, model) of the manifest's model
        name_template: str | None,
        tally: Callable[[JobSpec], None] | None = None,
    ):
        self.schema, self.media, self.lines = schema, media, lines
        self.tally = tally  # told of each job checked (validate prices them in this pass)
        self.refused, self.top = refused, top
        self.meta, self.prompts = MetaCheck(), PromptCheck()
        self.names = NameCheck(name_template) if name_template is not None else None
        self._refused: dict[tuple, Problem] = {}
        self.count = 0
        self.models: dict[str, int] = {}  # jobs per model, in first-use order

    def run(self, jobs: Iterable[JobSpec]) -> Iterator[JobSpec]:
        for job in jobs:
            self.schema.job(job)
            if job.model in self.refused:
                self._refuse(job)
            lines = self.lines.get(job.source or Location("<jobs>"), {}) if self.lines else {}
            job = self.media.job(job, lines)
            self.meta.job(job)
            self.prompts.job(job)
            if self.names is not None:
                self.names.job(job)
            self.count += 1
            self.models[job.model] = self.models.get(job.model, 0) + 1
            if self.tally is not None:
                self.tally(job)
            yield job
        self.media.finish()

    def _refuse(self, job: JobSpec) -> None:
        """One problem per place a refused model is named: a job's (or sweep's) `model:` line,
        else the manifest's own `model:` line (a --model value: the file, no line)."""
        loc = job.source or Location("<jobs>")
        line = self.lines.get(loc, {}).get("model")  # the job (or its sweep) names the model
        file = loc.file
        if line is None and job.model == self.top[2]:  # the manifest's model for every job
            file, line = self.top[0], self.top[1]
        elif line is None:
            line = loc.line
        key = (file, line, job.model)
        if key not in self._refused:
            self._refused[key] = Problem(file, line, None, self.refused[job.model], job.model)

    def problems(self, at: Callable[[set[int]], dict[int, JobSpec]]) -> list[Problem]:
        """Every problem found but the schema's (`at`: the jobs at some 1-based positions,
        read again to name the first job of a clashing output name)."""
        found = list(self._refused.values()) + self.media.problems
        found += list(self.meta.found.values()) + list(self.prompts.problems.values())
        if self.names is not None:
            found += self.names.problems(at)
        return found

    def warnings(self) -> list[str]:
        return self.schema.warnings + self.media.warnings + list(self.prompts.warnings.values())


class NameCheck:
    """Each job's first output name (numbered by its position), remembered as a digest of its
    case-folded form (macOS and Windows compare names so); a clash is confirmed by rendering
    the first job's name again."""

    def __init__(self, template: str):
        self.template = template
        self.position = 0
        self.seen = DigestMap()
        self.failed: dict[tuple, Problem] = {}
        self.clashes: list[tuple[int, Location, str]] = []  # (first's position, other, name)

    def job(self, job: JobSpec) -> None:
        self.position += 1
        loc = job.source or Location("<jobs>")
        try:
            name = job_file_name(self.template, job, index=self.position)
        except UsageError as exc:
            why = str(exc)
            self.failed.setdefault((loc, why), Problem(loc.file, loc.line, None, why))
            return
        first, seen = self.seen.setdefault(digest(_folded(name)), self.position)
        if seen:
            self.clashes.append((first, loc, name))

    def problems(self, at: Callable[[set[int]], dict[int, JobSpec]]) -> list[Problem]:
        """Names a job lacks fields for, and names that clash (once per pair of lines,
        however many of their jobs clash)."""
        problems = dict(self.failed)
        firsts = at({first for first, _, _ in self.clashes}) if self.clashes else {}
        by_lines: dict[tuple[Location, Location], list[str]] = {}
        for first, other, name in self.clashes:
            job = firsts[first]
            if _folded(job_file_name(self.template, job, index=first)) != _folded(name):
                continue  # two names with one digest: no clash
            by_lines.setdefault((job.source or Location("<jobs>"), other), []).append(name)
        for (a, b), clashing in by_lines.items():
            n = len(clashing)
            more = f" ({n} clashing names between these lines)" if n > 1 else ""
            msg = (
                f"output name {clashing[0]!r} is also given to the job from line {a.line}{more}; "
                "add {index}, {key} or a field that differs to the name template"
            )
            problems[(a, b)] = Problem(b.file, b.line, None, msg)
        return list(problems.values())


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()
