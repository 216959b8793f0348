"""The HTML gallery: one self-contained report.html: cards, sweep grids, rows at scale.

The page is written section by section; from a StateStore the jobs are read a section (or a
page of rows) at a time, so a 100,000-job run renders in flat memory.
"""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.money import dollars, usd
from batch_runner.outputs.files import atomic_text
from batch_runner.report.assets import CSS, JS
from batch_runner.report.chains import Pipeline
from batch_runner.report.html import (
    IMAGE_EXTS,
    ROW_SIZE,
    THUMBS,
    breakable,
    escape,
    job_anchor,
    job_label,
    kv_pairs,
    media_html,
    placeholder_reason,
    render_cards,
    section_head,
    show_value,
)
from batch_runner.report.sweep import render_sweep, sweep_label
from batch_runner.report.thumbs import MIN_BYTES, make_thumbs, thumbs_of
from batch_runner.sizes import size_text
from batch_runner.store.costs import cost_summary
from batch_runner.store.state import StateStore

COMPACT_ABOVE = 5000  # a section (sweep, or the plain jobs) with more jobs is shown as rows
ROWS_PAGE = 1000


def render_report(records: Iterable[JobRecord], *, title: str) -> str:
    """Render one self-contained HTML page (no network) for these jobs."""
    out = io.StringIO()
    _write_page(out, _ListSource(records), title)
    return out.getvalue()


def write_report(run_dir: Path, jobs: StateStore | Iterable[JobRecord], *, title: str) -> Path:
    """Write RUN_DIR/report.html atomically (temporary file, then rename) and return its path.

    Given a StateStore, jobs are read a section (sweep) or a page at a time and the page is
    written as it is rendered, so memory stays flat however many jobs the run has.
    """
    source = StoreSource(jobs) if isinstance(jobs, StateStore) else _ListSource(jobs)
    return write_page(Path(run_dir), source, title)


def write_page(run_dir: Path, source: Any, title: str) -> Path:
    """Write RUN_DIR/report.html from a source of jobs (totals, sections, iter_section,
    first_of: see StoreSource) atomically; `merge` gives one over every shard. The images'
    thumbnails are made first (those missing), then the page points at them."""
    if isinstance(source, StoreSource):  # the files' rows only: no pass over the jobs
        thumbs = THUMBS.set(thumbs_of(run_dir, source.thumb_files(), IMAGE_EXTS))
    else:
        records = (rec for sweep in source.sections() for rec in source.iter_section(sweep))
        thumbs = THUMBS.set(make_thumbs(run_dir, records, IMAGE_EXTS))
    path = run_dir / "report.html"
    try:
        with atomic_text(path) as fh:
            _write_page(fh, source, title)
    finally:
        THUMBS.reset(thumbs)
    return path


# ---------------------------------------------------------------- sources of jobs


@dataclass
class Totals:
    counts: Counter[str]
    jobs: int
    files: int
    bytes: int
    spent: float = 0.0  # USD, the API's costs
    estimated: float | None = None
    per_model: dict[str, tuple[int, float]] | None = None  # jobs, spent
    possible_extra: float | None = 0.0  # USD, if the possible duplicates were charged too


class _ListSource:
    """Jobs given as records (tests, small runs)."""

    def __init__(self, records: Iterable[JobRecord]):
        self._recs = sorted(records, key=lambda r: r.index)

    def totals(self) -> Totals:
        files = [f for r in self._recs for f in r.files]
        counts = Counter(r.state.value for r in self._recs)
        per_model: dict[str, tuple[int, float]] = {}
        for r in self._recs:
            jobs, spent = per_model.get(r.model, (0, 0.0))
            per_model[r.model] = (jobs + 1, usd(spent + (r.cost_usd or 0.0)))
        spent = usd(sum(r.cost_usd or 0.0 for r in self._recs))
        size = sum(f.bytes for f in files)
        return Totals(counts, len(self._recs), len(files), size, spent, None, per_model)

    def sections(self) -> dict[int | None, int]:
        return dict(Counter(r.sweep for r in self._recs))

    def iter_section(self, sweep: int | None) -> Iterator[JobRecord]:
        return (r for r in self._recs if r.sweep == sweep)

    def first_of(self, sweep: int | None) -> JobRecord:
        return next(self.iter_section(sweep))

    # a pipeline's reads (report/chains.py)
    def stages(self) -> list[str]:
        return list(dict.fromkeys(r.stage for r in self._recs if r.stage))

    def stage_sections(self) -> dict[tuple[str | None, int | None], int]:
        return dict(Counter((r.stage, r.sweep) for r in self._recs))

    def iter_stage_section(self, stage: str | None, sweep: int | None) -> Iterator[JobRecord]:
        return (r for r in self._recs if r.stage == stage and r.sweep == sweep)

    def chain_roots(self) -> Iterator[JobRecord]:
        keys = {r.key for r in self._recs}
        return (r for r in self._recs if r.stage and r.parent_key not in keys)

    def children_of(self, keys: list[str]) -> list[JobRecord]:
        wanted = set(keys)
        return [r for r in self._recs if r.parent_key in wanted]


class StoreSource:
    """Jobs read from the state file a batch at a time."""

    def __init__(self, store: StateStore):
        self._store = store
        self._spans = store.sweep_spans()

    def totals(self) -> Totals:
        counts = self._store.counts()
        files, size = self._store.file_totals()
        cost = cost_summary(self._store)
        per_model = self._store.model_spent()
        return Totals(
            Counter(counts),
            sum(counts.values()),
            files,
            size,
            cost["spent_usd"],
            cost["estimated_usd"],
            per_model,
            cost["possible_extra_usd"],
        )

    def sections(self) -> dict[int | None, int]:
        return {sweep: n for sweep, (n, _, _) in self._spans.items()}

    def thumb_files(self) -> list[FileRecord]:
        return self._store.files_from(MIN_BYTES)

    def iter_section(self, sweep: int | None) -> Iterator[JobRecord]:
        _, first, last = self._spans[sweep]
        return self._store.iter_sweep(sweep, (first, last))

    def first_of(self, sweep: int | None) -> JobRecord:
        first = self._spans[sweep][1]
        return next(self._store.iter_sweep(sweep, (first, first), batch=1))

    # a pipeline's reads (report/chains.py; store/lineage.py)
    def stages(self) -> list[str]:
        if not self._store._has_lineage():
            return []
        named = [p["name"] for p in self._store.stage_plans()]
        return list(dict.fromkeys(named + [s for s, _ in self.stage_sections() if s]))

    def stage_sections(self) -> dict[tuple[str | None, int | None], int]:
        return self._store.stage_sections()

    def iter_stage_section(self, stage: str | None, sweep: int | None) -> Iterator[JobRecord]:
        return self._store.iter_stage_section(stage, sweep)

    def chain_roots(self) -> Iterator[JobRecord]:
        return self._store.chain_roots()

    def children_of(self, keys: list[str]) -> list[JobRecord]:
        return self._store.children_of(keys)


_Source = _ListSource | StoreSource


# ---------------------------------------------------------------- the page


def _write_page(out: TextIO, source: _Source, title: str) -> None:
    pipeline = Pipeline.of(source)
    sizes = source.sections()
    order: list[tuple[int | None, str, str]] = []  # (sweep, anchor, label)
    if pipeline is not None:
        sizes = {}  # the pipeline writes its own sections
    for n in sorted(k for k in sizes if k is not None):
        order.append((n, f"sweep-{n}", sweep_label(n, [source.first_of(n)])))
    if None in sizes:
        order.append((None, "jobs", "Jobs"))
    toc_entries = [(a, label) for _, a, label in order] + (pipeline.toc() if pipeline else [])
    toc = "".join(f'<a href="#{a}">{escape(label)}</a>' for a, label in toc_entries)
    out.write(
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # an empty icon keeps the browser from asking the network for /favicon.ico
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
        f"{_render_header(source.totals(), title, toc)}\n<main>\n"
    )
    for n, anchor, label in order:
        jobs = source.iter_section(n)
        if sizes[n] > COMPACT_ABOVE:
            _write_rows(out, jobs, sizes[n], anchor, "Jobs" if n is None else label)
        elif n is None:
            plain = list(jobs)
            body = section_head("Jobs", f"{len(plain)} jobs") + render_cards(plain)
            out.write(f'<section id="jobs">{body}</section>\n')
        else:
            out.write(render_sweep(n, list(jobs), anchor, label) + "\n")
    if pipeline is not None:
        pipeline.write(out, _write_rows, COMPACT_ABOVE)
    elif not sizes:
        out.write('<p class="muted">No jobs.</p>\n')
    out.write(f"</main><script>{JS}</script></body></html>")


def _write_rows(out: TextIO, jobs: Iterator[JobRecord], n: int, anchor: str, label: str) -> None:
    """A section too big for cards or a grid: one row per job, in folded pages."""
    note = (
        f"{n} jobs · too many for cards or a grid: one row per job, {ROWS_PAGE} to a page "
        "(a page's thumbnails load when it is opened)"
    )
    out.write(f'<section class="rows" id="{anchor}">{section_head(label, note)}\n')
    first = True
    while page := list(itertools.islice(jobs, ROWS_PAGE)):
        rows = "".join(_row(r) for r in page)
        out.write(
            f'<details class="page"{" open" if first else ""}>'
            f"<summary>{escape(job_label(page[0]))} \u2013 {escape(job_label(page[-1]))}</summary>"
            '<table class="list rows"><thead><tr><th>#</th><th>state</th><th>files</th>'
            "<th>model</th><th>prompt</th><th>settings · meta · vars</th><th>reason</th>"
            "</tr></thead>"
            f"<tbody>{rows}</tbody></table></details>\n"
        )
        first = False
    out.write("</section>\n")


def _row(r: JobRecord) -> str:
    label = job_label(r)
    media = "".join(media_html(f, label, ROW_SIZE) for f in r.files)
    rid = f' title="{escape(r.request_ids[-1])}"' if r.request_ids else ""
    return (
        f'<tr id="{job_anchor(r)}"><td{rid}>{escape(label)}</td>'
        f'<td><span class="badge s-{r.state.value}">{r.state.value}</span></td>'
        f'<td class="thumbs">{media}</td><td>{breakable(r.model)}</td>'
        f"<td>{escape(show_value(r.inputs.get('prompt', '')))}</td>"
        f"<td>{escape(', '.join(f'{k}={v}' for k, v in kv_pairs(r)))}</td>"
        f"<td>{escape(placeholder_reason(r))}</td></tr>"
    )


# ---------------------------------------------------------------- header and cards


def _render_header(totals: Totals, title: str, toc: str) -> str:
    counts = totals.counts
    badges = "".join(
        f'<span class="badge s-{s.value}">{s.value}<b>{counts[s.value]}</b></span>'
        for s in JobState
        if counts[s.value]
    )
    totals_html = (
        f'<span class="totals">{totals.jobs} jobs · {totals.files} files · '
        f'<span title="{totals.bytes} bytes">{size_text(totals.bytes)}</span></span>'
    )
    nav = f'<nav class="toc">{toc}</nav>' if toc else ""
    return (
        f'<header class="top"><h1>{escape(title)}</h1>'
        f'<div class="stats">{badges}{totals_html}{_cost_html(totals)}</div>{nav}</header>'
    )


def _cost_html(totals: Totals) -> str:
    """The run's cost: spent of estimated, what possible duplicates may add (as `status`
    says it), and per model when the run has several."""
    line = f"cost {dollars(totals.spent)}"
    if totals.estimated is not None and totals.estimated != totals.spent:
        line += f" of {dollars(totals.estimated)} estimated"
    if totals.possible_extra != 0:
        line += (
            f'; <span class="extra" title="submissions sent again after their answer was lost '
            f'may have been charged twice">possibly {dollars(totals.possible_extra)} more</span>'
        )
    models = ""
    if totals.per_model and len(totals.per_model) > 1:
        rows = "".join(
            f"<tr><td>{breakable(m)}</td><td>{n}</td><td>{dollars(c)}</td></tr>"
            for m, (n, c) in sorted(totals.per_model.items())
        )
        models = (
            '<table class="list models"><thead><tr><th>model</th><th>jobs</th><th>cost</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<span class="totals cost">{line}</span>{models}'
