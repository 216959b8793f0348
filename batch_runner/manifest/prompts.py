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
    limits: dict[str, int] = {}
    problems: dict[Location, Problem] = {}
    warnings: dict[Location, str] = {}
    for job in jobs:
        prompt = job.inputs.get("prompt")
        if not isinstance(prompt, str):
            continue  # absent or not text: the schema check says so where it matters
        loc = job.source or Location("<jobs>")
        if not prompt.strip():
            problems.setdefault(loc, Problem(loc.file, loc.line, "prompt", "is empty"))
            continue
        if job.model not in limits:
            limits[job.model] = _word_limit(job.model)
        limit, words = limits[job.model], len(prompt.split())
        if words > limit and loc not in warnings:
            warnings[loc] = (
                f"{loc}: prompt has {words} words; {job.model} recommends at most {limit} "
                "(the model may ignore the rest)"
            )
    return list(problems.values()), list(warnings.values())


def _word_limit(model: str) -> int:
    """The word limit a model's schema recommends in the prompt's description, else 600."""
    prop = checker_for(model).props.get("prompt") or {}
    m = _MOST_WORDS.search(str(prop.get("description", "")))
    return int(m.group(1).replace(",", "")) if m else DEFAULT_MAX_WORDS
