"""A pipeline's report.html (CONTRACT §3, issue 27): each chain (a first-stage job with its
descendants beside it: still → clips → sound), then each stage's sweeps as grids.

A chain is drawn as nested boxes: a job's card, and beside it a column of its children, each a
chain in turn; so a child's card is inside its parent's chain, in the DOM as on the screen.
Chains are read a page of first-stage jobs at a time (their descendants level by level), so a
large pipeline renders in memory bounded by a page. Jobs outside the pipeline (an earlier
single-stage run of the same directory) keep the single-stage sections after the grids.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO

from batch_runner.jobs import JobRecord
from batch_runner.report.html import escape, job_label, render_card, render_cards, section_head
from batch_runner.report.sweep import render_sweep, sweep_label
from batch_runner.words import plural

CHAINS_PAGE = 100  # first-stage jobs per folded page when the pipeline is large

Section = tuple[str | None, int | None]  # (stage, sweep entry); stage None: outside the pipeline
WriteRows = Callable[[TextIO, Iterator[JobRecord], int, str, str], None]


class PipelineSource(Protocol):
    def stages(self) -> list[str]: ...
    def stage_sections(self) -> dict[Section, int]: ...
    def iter_stage_section(self, stage: str | None, sweep: int | None) -> Iterator[JobRecord]: ...
    def chain_roots(self) -> Iterator[JobRecord]: ...
    def children_of(self, keys: list[str]) -> list[JobRecord]: ...


class Pipeline:
    """The sections of a pipeline's page: chains, then per stage its sweeps."""

    def __init__(self, source: PipelineSource, stages: list[str]):
        self.source = source
        self.stages = stages
        self.sizes = source.stage_sections()
        rank = {s: i for i, s in enumerate(stages)}
        self.order = sorted(
            self.sizes,
            key=lambda k: (k[0] is None, rank.get(k[0] or "", len(rank)), k[1] is None, k[1] or 0),
        )
        self._labels: dict[Section, str] = {}

    @classmethod
    def of(cls, source: Any) -> Pipeline | None:
        """The pipeline view of a source whose jobs belong to stages; None otherwise."""
        stages = source.stages() if hasattr(source, "stages") else []
        return cls(source, stages) if stages else None

    def _shown(self) -> list[Section]:
        """The sections after the chains: each stage's sweeps, then the jobs outside it."""
        return [k for k in self.order if k[1] is not None or k[0] is None]

    def _anchor(self, key: Section) -> str:
        stage, n = key
        if stage is None:
            return "jobs" if n is None else f"sweep-{n}"
        return f"sweep-{stage}-{n}"

    def _label(self, key: Section) -> str:
        if key not in self._labels:
            stage, n = key
            if n is None:
                label = "Jobs"
            else:
                first = next(self.source.iter_stage_section(stage, n))
                label = sweep_label(n, [first])
            self._labels[key] = f"{stage} · {label}" if stage else label
        return self._labels[key]

    def toc(self) -> list[tuple[str, str]]:
        return [("chains", "Chains")] + [(self._anchor(k), self._label(k)) for k in self._shown()]

    def write(self, out: TextIO, write_rows: WriteRows, compact_above: int) -> None:
        self._write_chains(out, compact_above)
        for key in self._shown():
            stage, n = key
            jobs = self.source.iter_stage_section(stage, n)
            anchor, label, size = self._anchor(key), self._label(key), self.sizes[key]
            if size > compact_above:
                write_rows(out, jobs, size, anchor, label)
            elif n is None:
                plain = list(jobs)
                body = section_head(label, plural(len(plain), "job")) + render_cards(plain)
                out.write(f'<section id="{anchor}">{body}</section>\n')
            else:
                # a stage's jobs are in the chains already: a one-axis sweep's cards again
                # would repeat their ids
                out.write(render_sweep(n, list(jobs), anchor, label, ids=stage is None) + "\n")

    # ---- chains ------------------------------------------------------------------------------

    def _write_chains(self, out: TextIO, compact_above: int) -> None:
        per_stage = {s: 0 for s in self.stages}
        for (stage, _), n in self.sizes.items():
            if stage is not None:
                per_stage[stage] = per_stage.get(stage, 0) + n
        note = " → ".join(f"{s} {plural(n, 'job')}" for s, n in per_stage.items())
        out.write(f'<section class="chains" id="chains">{section_head("Chains", note)}\n')
        paged = sum(per_stage.values()) > compact_above
        roots = self.source.chain_roots()
        first = True
        while page := list(itertools.islice(roots, CHAINS_PAGE)):
            kids = self._descendants(page)
            body = "".join(_chain(r, kids) for r in page)
            if paged:
                head = f"{escape(job_label(page[0]))} \u2013 {escape(job_label(page[-1]))}"
                opened = " open" if first else ""
                body = f'<details class="page"{opened}><summary>{head}</summary>{body}</details>'
            out.write(body + "\n")
            first = False
        out.write("</section>\n")

    def _descendants(self, roots: list[JobRecord]) -> dict[str, list[JobRecord]]:
        """Parent key → its children (in index order), every level below these jobs."""
        kids: dict[str, list[JobRecord]] = {}
        seen = {r.key for r in roots}
        level = list(seen)
        while level:
            found = self.source.children_of(level)
            level = []
            for rec in found:
                if rec.key not in seen and rec.parent_key:
                    seen.add(rec.key)
                    kids.setdefault(rec.parent_key, []).append(rec)
                    level.append(rec.key)
        return kids


def _chain(rec: JobRecord, kids: dict[str, list[JobRecord]]) -> str:
    below = kids.get(rec.key, [])
    inner = "".join(_chain(k, kids) for k in below)
    column = f'<div class="kids">{inner}</div>' if below else ""
    stage = escape(rec.stage or "")
    return f'<div class="chain" data-stage="{stage}">{render_card(rec)}{column}</div>'
