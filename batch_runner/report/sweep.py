"""A sweep with two or more varying fields as a grid (rows x columns, selectable, filterable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batch_runner.jobs import JobRecord, JobState
from batch_runner.report.html import (
    CELL_SIZE,
    breakable,
    escape,
    file_url,
    job_label,
    json_for_script,
    kv_pairs,
    media_html,
    media_kind,
    placeholder,
    render_cards,
    section_head,
    show_value,
    thumb_url,
)
from batch_runner.report.inputs import inputs_html


@dataclass(frozen=True)
class _Field:
    """One swept field of a sweep: where it lives, its label and its values in first-seen order."""

    group: str  # "model", "vars", "inputs" or "parent" (a pipeline child's parent file)
    name: str
    label: str
    values: tuple[str, ...]

    def of(self, rec: JobRecord) -> str:
        if self.group == "model":
            return rec.model
        if self.group == "parent":
            return (rec.parent_file or "").rsplit("/", 1)[-1]
        source = rec.vars if self.group == "vars" else rec.inputs
        return show_value(source.get(self.name))


# ---------------------------------------------------------------- sweeps


def sweep_label(n: int, jobs: list[JobRecord]) -> str:
    """'Sweep 1' for the first sweep entry, with its manifest line when known."""
    line = jobs[0].source.rsplit(":", 1)[-1] if jobs[0].source else ""
    return f"Sweep {n + 1}" + (f" (line {line})" if line.isdigit() else "")


def render_sweep(
    n: int, jobs: list[JobRecord], anchor: str, label: str, *, ids: bool = True
) -> str:
    fields = _sweep_fields(jobs)
    axes = ", ".join(f"{f.label} ({len(f.values)})" for f in fields) or "none"
    head = section_head(label, f"{len(jobs)} jobs · varying: {axes}{_fixed_note(jobs)}")
    if len(fields) < 2:
        cards = render_cards(jobs, ids=ids)
        return f'<section class="sweep-cards" id="{anchor}">{head}{cards}</section>'
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
        f'<script type="application/json" class="sweep-data">{json_for_script(data)}</script>'
        "</section>"
    )


def _sweep_fields(jobs: list[JobRecord]) -> list[_Field]:
    """Fields whose values differ across the sweep: the model first (what people sweep models
    for is to compare them: they are the rows), vars, then inputs not implied by those."""
    parents = _parent_fields(jobs)
    var_fields = [
        f
        for f in _candidates(jobs, "vars")
        if len(f.values) > 1 and not (parents and _implied(jobs, parents, f))
    ]
    var_names = {f.name for f in var_fields}
    models = tuple(dict.fromkeys(rec.model for rec in jobs))
    model_fields = (
        []
        if len(models) < 2 or "model" in var_names
        else [_Field("model", "model", "model", models)]
    )
    input_fields = []
    given = parents + model_fields + var_fields
    for f in _candidates(jobs, "inputs"):
        # a templated prompt varies only because the vars do, a `duration` only one of the
        # models takes because the model does: neither is an axis of its own
        if len(f.values) > 1 and not (given and _implied(jobs, given, f)):
            label = f"input {f.name}" if f.name in var_names else f.name
            input_fields.append(_Field(f.group, f.name, label, f.values))
    return parents + model_fields + var_fields + input_fields


def _parent_fields(jobs: list[JobRecord]) -> list[_Field]:
    """A later stage's sweep varies with the parent file too (its `{from:}` field's URL and
    `input_stem` only because of it): one axis named by the parent's file."""
    if not any(rec.parent_file for rec in jobs):
        return []
    probe = _Field("parent", "parent", "parent", ())
    values = tuple(dict.fromkeys(probe.of(rec) for rec in jobs))
    return [_Field("parent", "parent", "parent", values)] if len(values) > 1 else []


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
        f"{k}={show_value(v)}"
        for k, v in first.items()
        if k != "prompt" and all(show_value(r.inputs.get(k)) == show_value(v) for r in jobs)
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
    head = "".join(f'<th class="col-head" scope="col">{breakable(v)}</th>' for v in col.values)
    body = "".join(
        f'<tr><th class="row-head" scope="row">{breakable(rv)}</th>'
        + "".join(f'<td class="cell">{"".join(cells.get((rv, cv), []))}</td>' for cv in col.values)
        + "</tr>"
        for rv in row.values
    )
    return (
        f'<table class="grid" data-sweep="{n}"><thead><tr>'
        f'<th class="corner">{escape(corner)}</th>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _grid_item(rec: JobRecord, stack: list[_Field]) -> str:
    label = job_label(rec)
    inner = "".join(media_html(f, label, CELL_SIZE) for f in rec.files)
    caption = " · ".join([label, *(f.of(rec) for f in stack)])
    return (
        f'<div class="item s-{rec.state.value}" title="{escape(_tooltip(rec))}">'
        f'{inner or placeholder(rec)}{inputs_html(rec)}<div class="cap">{escape(caption)}</div>'
        "</div>"
    )


def _grid_job(rec: JobRecord, fields: list[_Field]) -> dict[str, Any]:
    return {
        "i": job_label(rec),
        "s": rec.state.value,
        "r": rec.reason or ("no files" if rec.state is JobState.DONE else None),
        "t": _tooltip(rec),
        "v": [f.values.index(f.of(rec)) for f in fields],
        "f": [
            {
                "src": file_url(f.file_name),
                "th": thumb_url(f),
                "kind": media_kind(f.file_name),
                "name": f.file_name.rsplit("/", 1)[-1],
            }
            for f in rec.files
        ],
    }


def _tooltip(rec: JobRecord) -> str:
    lines = [f"{job_label(rec)} · {rec.state.value}", rec.model]
    if "prompt" in rec.inputs:
        lines.append(show_value(rec.inputs["prompt"]))
    lines += [f"{k}: {v}" for k, v in kv_pairs(rec)]
    if rec.reason:
        lines.append(f"reason: {rec.reason}")
    return "\n".join(lines)


def _job_list(jobs: list[JobRecord]) -> str:
    """Every job of the sweep as text (prompt, settings, reason), folded away under the grid."""
    rows = "".join(
        f'<tr><td title="{escape(r.key)}">{escape(job_label(r))}</td>'
        f'<td><span class="badge s-{r.state.value}">{r.state.value}</span></td>'
        f"<td>{escape(show_value(r.inputs.get('prompt', '')))}</td>"
        f"<td>{escape(', '.join(f'{k}={v}' for k, v in kv_pairs(r)))}</td>"
        f"<td>{escape(r.reason or '')}</td></tr>"
        for r in jobs
    )
    return (
        f'<details class="jobs"><summary>All {len(jobs)} jobs of this sweep as text</summary>'
        '<table class="list"><thead><tr><th>#</th><th>state</th><th>prompt</th>'
        f"<th>settings · meta · vars</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
        "</details>"
    )
