"""Checks on the prompt text itself, beyond its JSON Schema type: an empty prompt is refused
(it would be paid for and produce noise), and a prompt longer than its model's schema
recommends (else 600 words, Seedream's advice) gets a warning."""

from __future__ import annotations

import re
from collections.abc import Iterable

from batch_runner.errors import Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.schema import checker_for

# the vendor's advice for Seedream ("at most 600 English words"; longer prompts lose details),
# used when a model's schema gives no figure of its own in the prompt's description
DEFAULT_MAX_WORDS = 600
_MOST_WORDS = re.compile(r"at most (\d[\d,]*) (?:\w+ )?words", re.IGNORECASE)


def prompt_problems(jobs: Iterable[JobSpec]) -> tuple[list[Problem], list[str]]:
    """(problems, warnings) about prompts, each once per manifest line."""
    check = PromptCheck()
    for job in jobs:
        check.job(job)
    return list(check.problems.values()), list(check.warnings.values())


class PromptCheck:
    """prompt_problems one job at a time."""

    def __init__(self) -> None:
        self.limits: dict[str, int] = {}
        self.problems: dict[Location, Problem] = {}
        self.warnings: dict[Location, str] = {}

    def job(self, job: JobSpec) -> None:
        prompt = job.inputs.get("prompt")
        if not isinstance(prompt, str):
            return  # absent or not text: the schema check says so where it matters
        loc = job.source or Location("<jobs>")
        if not prompt.strip():
            self.problems.setdefault(loc, Problem(loc.file, loc.line, "prompt", "is empty"))
            return
        limit = self.limits.get(job.model)
        if limit is None:
            limit = self.limits[job.model] = _word_limit(job.model)
        if len(prompt) <= limit:  # fewer characters than the limit: fewer words too
            return
        words = len(prompt.split())
        if words > limit and loc not in self.warnings:
            self.warnings[loc] = (
                f"{loc}: prompt has {words} words; {job.model} recommends at most {limit} "
                "(the model may ignore the rest)"
            )


def _word_limit(model: str) -> int:
    """The word limit a model's schema recommends in the prompt's description, else 600."""
    prop = checker_for(model).props.get("prompt") or {}
    m = _MOST_WORDS.search(str(prop.get("description", "")))
    return int(m.group(1).replace(",", "")) if m else DEFAULT_MAX_WORDS
