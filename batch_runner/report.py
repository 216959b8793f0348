"""The HTML gallery: one self-contained report.html with cards for jobs and grids for sweeps."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batch_runner.jobs import FileRecord, JobRecord, JobState
from batch_runner.report_assets import CSS, JS

CARD_SIZE = 256  # intrinsic size hint for card thumbnails; CSS scales them into square boxes
CELL_SIZE = 140  # the same for grid cells (must match SIZE in report_assets.JS)
IMAGE_EXTS = {"png", "jpg", "jpeg", "webp", "gif", "avif", "bmp"}
VIDEO_EXTS = {"mp4", "webm", "mov", "m4v"}


@dataclass(frozen=True)
class _Field:
    """One swept field of a sweep: where it lives, its label and its values in first-seen order."""

    group: str  # "vars" or "inputs"
    name: str
    label: str
    values: tuple[str, ...]

    def of(self, rec: JobRecord) -> str:
        source = rec.vars if self.group == "vars" else rec.inputs
        return _show(source.get(self.name))


def render_report(records: list[JobRecord], *, title: str) -> str:
    """Render one self-contained HTML page (no network) for these jobs."""
    records = sorted(records, key=lambda r: r.index)
    sweeps: dict[int, list[JobRecord]] = {}
    plain: list[JobRecord] = []
    for rec in records:
        if rec.sweep is None:
            plain.append(rec)
        else:
            sweeps.setdefault(rec.sweep, []).append(rec)
    sections: list[tuple[str, str, str]] = []  # (anchor, label, html)
    for n in sorted(sweeps):
        anchor = f"sweep-{n}"
        label = _sweep_label(n, sweeps[n])
        sections.append((anchor, label, _render_sweep(n, sweeps[n], anchor, label)))
    if plain:
        body = _section_head("Jobs", f"{len(plain)} jobs") + _render_cards(plain)
        sections.append(("jobs", "Jobs", f'<section id="jobs">{body}</section>'))
    toc = "".join(f'<a href="#{a}">{escape(label)}</a>' for a, label, _ in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # an empty icon keeps the browser from asking the network for /favicon.ico
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        _render_header(records, title, toc),
        "<main>",
        *(html for _, _, html in sections),
        "" if records else '<p class="muted">No jobs.</p>',
        f"</main><script>{JS}</script></body></html>",
    ]
    return "\n".join(parts)


def write_report(run_dir: Path, records: list[JobRecord], *, title: str) -> Path:
    """Write RUN_DIR/report.html atomically (temporary file, then rename) and return its path."""
    run_dir = Path(run_dir)
    path = run_dir / "report.html"
    tmp = run_dir / f".report.html.{os.getpid()}.tmp"
    try:
        tmp.write_text(render_report(records, title=title), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- header and cards


def _render_header(records: list[JobRecord], title: str, toc: str) -> str:
    counts = Counter(r.state for r in records)
    badges = "".join(
        f'<span class="badge s-{s.value}">{s.value}<b>{counts[s]}</b></span>'
        for s in JobState
        if counts[s]
    )
    files = [f for r in records for f in r.files]
    total = sum(f.bytes for f in files)
    totals = (
        f'<span class="totals">{len(records)} jobs · {len(files)} files · '
        f'<span title="{total} bytes">{_human_bytes(total)}</span></span>'
    )
    nav = f'<nav class="toc">{toc}</nav>' if toc else ""
    return (
        f'<header class="top"><h1>{escape(title)}</h1>'
        f'<div class="stats">{badges}{totals}</div>{nav}</header>'
    )


def _section_head(name: str, sub: str) -> str:
    return f'<h2>{escape(name)}</h2><p class="sub">{escape(sub)}</p>'


def _render_cards(records: list[JobRecord]) -> str:
    return '<div class="cards">' + "".join(_render_card(r) for r in records) + "</div>"


def _render_card(rec: JobRecord) -> str:
    state = rec.state.value
    n = min(len(rec.files), 3)
    style = f' style="--n:{n}"' if n > 1 else ""
    media = "".join(_media(f, f"#{rec.index}", CARD_SIZE) for f in rec.files)
    if not rec.files:
        media = _placeholder(rec)
    prompt = rec.inputs.get("prompt")
    prompt_html = f'<p class="prompt">{escape(_show(prompt))}</p>' if prompt is not None else ""
    # without files the placeholder already shows the reason
    reason = f'<p class="reason">{escape(rec.reason)}</p>' if rec.reason and rec.files else ""
    rid = f" · {escape(rec.request_ids[-1])}" if rec.request_ids else ""
    return (
        f'<div class="card s-{state}" id="job-{rec.index}">'
        f'<div class="media"{style}>{media}</div><div class="body">'
        f'<div class="line1"><span class="idx">#{rec.index}</span>'
        f'<span class="badge s-{state}">{state}</span></div>'
        f"{prompt_html}{_kv_list(rec)}{reason}"
        f'<div class="foot">{escape(rec.key)}{rid}</div></div></div>'
    )


def _kv_pairs(rec: JobRecord) -> list[tuple[str, str]]:
    pairs = [(k, _show(v)) for k, v in rec.inputs.items() if k != "prompt"]
    pairs += [(f"meta.{k}", _show(v)) for k, v in rec.meta.items()]
    pairs += [(f"vars.{k}", _show(v)) for k, v in rec.vars.items()]
    if rec.copy:
        pairs.append(("copy", str(rec.copy)))
    return pairs


def _kv_list(rec: JobRecord) -> str:
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in _kv_pairs(rec))
    return f'<dl class="kv">{rows}</dl>' if rows else ""


def _placeholder(rec: JobRecord) -> str:
    reason = rec.reason or ("no files" if rec.state is JobState.DONE else "")
    span = f"<span>{escape(reason)}</span>" if reason else ""
    return f'<div class="ph"><b>{rec.state.value}</b>{span}</div>'


def _media(f: FileRecord, alt: str, size: int) -> str:
    src = escape(_src(f.file_name))
    kind = _kind(f.file_name)
    if kind == "img":
        return (
            f'<a class="thumb" href="{src}" target="_blank" rel="noopener">'
            f'<img src="{src}" loading="lazy" decoding="async" width="{size}" height="{size}" '
            f'alt="{escape(alt)}"></a>'
        )
    if kind == "video":
        return (
            f'<div class="thumb"><video src="{src}" preload="none" controls muted '
            f'width="{size}" height="{size}"></video></div>'
        )
    name = escape(f.file_name.rsplit("/", 1)[-1])
    return f'<a class="thumb file" href="{src}" target="_blank" rel="noopener">{name}</a>'


# ---------------------------------------------------------------- sweeps


def _sweep_label(n: int, jobs: list[JobRecord]) -> str:
    """'Sweep 1' for the first sweep entry, with its manifest line when known."""
    line = jobs[0].source.rsplit(":", 1)[-1] if jobs[0].source else ""
    return f"Sweep {n + 1}" + (f" (line {line})" if line.isdigit() else "")


def _render_sweep(n: int, jobs: list[JobRecord], anchor: str, label: str) -> str:
    fields = _sweep_fields(jobs)
    axes = ", ".join(f"{f.label} ({len(f.values)})" for f in fields) or "none"
    head = _section_head(label, f"{len(jobs)} jobs · varying: {axes}{_fixed_note(jobs)}")
    if len(fields) < 2:
        return f'<section class="sweep-cards" id="{anchor}">{head}{_render_cards(jobs)}</section>'
    data = {
        "sweep": n,
        "row": 0,
        "col": 1,
        "fields": [{"label": f.label, "values": list(f.values)} for f in fields],
        "jobs": [_grid_job(rec, fields) for rec in jobs],
    }
    return (
        f'<section class="sweep" id="{anchor}" data-sweep="{n}">{head}'
        f"{_controls(fields)}"
        f'<div class="grid-wrap">{_grid_table(n, jobs, fields)}</div>'
        f"{_job_list(jobs)}"
        f'<script type="application/json" class="sweep-data">{_json_for_script(data)}</script>'
        "</section>"
    )


def _sweep_fields(jobs: list[JobRecord]) -> list[_Field]:
    """Fields whose values differ across the sweep: vars first, then inputs not implied by vars."""
    var_fields = [f for f in _candidates(jobs, "vars") if len(f.values) > 1]
    var_names = {f.name for f in var_fields}
    input_fields = []
    for f in _candidates(jobs, "inputs"):
        # a templated prompt varies only because the vars do: it is not an axis of its own
        if len(f.values) > 1 and not (var_fields and _implied(jobs, var_fields, f)):
            label = f"input {f.name}" if f.name in var_names else f.name
            input_fields.append(_Field(f.group, f.name, label, f.values))
    return var_fields + input_fields


def _candidates(jobs: list[JobRecord], group: str) -> list[_Field]:
    names = dict.fromkeys(k for rec in jobs for k in getattr(rec, group))
    fields = []
    for name in names:
        probe = _Field(group, name, name, ())
        values = tuple(dict.fromkeys(probe.of(rec) for rec in jobs))
        fields.append(_Field(group, name, name, values))
    return fields


def _implied(jobs: list[JobRecord], by: list[_Field], field: _Field) -> bool:
    seen: dict[tuple[str, ...], str] = {}
    for rec in jobs:
        value = seen.setdefault(tuple(f.of(rec) for f in by), field.of(rec))
        if value != field.of(rec):
            return False
    return True


def _fixed_note(jobs: list[JobRecord]) -> str:
    first = jobs[0].inputs
    fixed = [
        f"{k}={_show(v)}"
        for k, v in first.items()
        if k != "prompt" and all(_show(r.inputs.get(k)) == _show(v) for r in jobs)
    ]
    return " · fixed: " + ", ".join(fixed) if fixed else ""


def _controls(fields: list[_Field]) -> str:
    def options(selected: int) -> str:
        return "".join(
            f'<option value="{i}"{" selected" if i == selected else ""}>{escape(f.label)}</option>'
            for i, f in enumerate(fields)
        )

    filters = "".join(
        f'<label class="filter" data-field="{i}"{" hidden" if i < 2 else ""}>{escape(f.label)}'
        f'<select class="filter" data-field="{i}" autocomplete="off"><option value="">all</option>'
        + "".join(f'<option value="{j}">{escape(v)}</option>' for j, v in enumerate(f.values))
        + "</select></label>"
        for i, f in enumerate(fields)
    )
    return (
        '<div class="controls">'
        f'<label>Rows<select class="axis-row" autocomplete="off">{options(0)}</select></label>'
        f'<label>Columns<select class="axis-col" autocomplete="off">{options(1)}</select></label>'
        f"{filters}</div>"
    )


def _grid_table(n: int, jobs: list[JobRecord], fields: list[_Field]) -> str:
    """The first view of the grid (rows: field 0, columns: field 1); JS redraws it alike."""
    row, col = fields[0], fields[1]
    stack = fields[2:]
    cells: dict[tuple[str, str], list[str]] = {}
    for rec in jobs:
        cells.setdefault((row.of(rec), col.of(rec)), []).append(_grid_item(rec, stack))
    corner = f"{row.label} \u2193  {col.label} \u2192"
    head = "".join(f'<th class="col-head" scope="col">{escape(v)}</th>' for v in col.values)
    body = "".join(
        f'<tr><th class="row-head" scope="row">{escape(rv)}</th>'
        + "".join(f'<td class="cell">{"".join(cells.get((rv, cv), []))}</td>' for cv in col.values)
        + "</tr>"
        for rv in row.values
    )
    return (
        f'<table class="grid" data-sweep="{n}"><thead><tr>'
        f'<th class="corner">{escape(corner)}</th>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _grid_item(rec: JobRecord, stack: list[_Field]) -> str:
    inner = "".join(_media(f, f"#{rec.index}", CELL_SIZE) for f in rec.files)
    caption = " · ".join([f"#{rec.index}", *(f.of(rec) for f in stack)])
    return (
        f'<div class="item s-{rec.state.value}" title="{escape(_tooltip(rec))}">'
        f'{inner or _placeholder(rec)}<div class="cap">{escape(caption)}</div></div>'
    )


def _grid_job(rec: JobRecord, fields: list[_Field]) -> dict[str, Any]:
    return {
        "i": rec.index,
        "s": rec.state.value,
        "r": rec.reason or ("no files" if rec.state is JobState.DONE else None),
        "t": _tooltip(rec),
        "v": [f.values.index(f.of(rec)) for f in fields],
        "f": [
            {
                "src": _src(f.file_name),
                "kind": _kind(f.file_name),
                "name": f.file_name.rsplit("/", 1)[-1],
            }
            for f in rec.files
        ],
    }


def _tooltip(rec: JobRecord) -> str:
    lines = [f"#{rec.index} · {rec.state.value}"]
    if "prompt" in rec.inputs:
        lines.append(_show(rec.inputs["prompt"]))
    lines += [f"{k}: {v}" for k, v in _kv_pairs(rec)]
    if rec.reason:
        lines.append(f"reason: {rec.reason}")
    return "\n".join(lines)


def _job_list(jobs: list[JobRecord]) -> str:
    """Every job of the sweep as text (prompt, settings, reason), folded away under the grid."""
    rows = "".join(
        f'<tr><td title="{escape(r.key)}">#{r.index}</td>'
        f'<td><span class="badge s-{r.state.value}">{r.state.value}</span></td>'
        f"<td>{escape(_show(r.inputs.get('prompt', '')))}</td>"
        f"<td>{escape(', '.join(f'{k}={v}' for k, v in _kv_pairs(r)))}</td>"
        f"<td>{escape(r.reason or '')}</td></tr>"
        for r in jobs
    )
    return (
        f'<details class="jobs"><summary>All {len(jobs)} jobs of this sweep as text</summary>'
        '<table class="list"><thead><tr><th>#</th><th>state</th><th>prompt</th>'
        f"<th>settings · meta · vars</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
        "</details>"
    )


# ---------------------------------------------------------------- small helpers


def _show(value: Any) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _src(file_name: str) -> str:
    """A relative URL for a path relative to the run directory (each component quoted)."""
    return "/".join(quote(part) for part in file_name.replace("\\", "/").split("/"))


def _kind(file_name: str) -> str:
    ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    return "img" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else "file"


def _json_for_script(data: Any) -> str:
    # inside <script> only "<" can end the element early ("</script>", "<!--")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable; keeps type checkers happy
