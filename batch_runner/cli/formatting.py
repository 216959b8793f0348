"""Pure text formatting for the CLI: summaries, status, validation previews."""

from __future__ import annotations

from typing import Any

from batch_runner.catalog import CatalogEntry
from batch_runner.jobs import JobSpec, shown_input
from batch_runner.money import Estimate, archive_text, dollars, fitting
from batch_runner.sizes import size_text
from batch_runner.words import duration_text, plural

STATE_ORDER = (
    "pending",
    "submitting",
    "queued",
    "running",
    "downloading",
    "done",
    "failed",
    "cancelled",
    "uncertain",
)


def format_counts(counts: dict[str, int], not_polled: int = 0) -> str:
    """`not_polled`: of the queued jobs, those no poll has seen yet (the API took them; whether
    they wait or already run is not known), shown apart rather than called queued."""
    counts = dict(counts)
    if not_polled:
        counts["queued"] = counts.get("queued", 0) - not_polled
    parts = []
    for s in STATE_ORDER:
        if s == "queued" and not_polled:
            parts.append(f"submitted (not polled yet) {not_polled}")
        if counts.get(s):
            parts.append(f"{s} {counts[s]}")
    return ", ".join(parts) if parts else "no jobs"


# retry causes (ErrorKind values and a few of the run's own) in words; others as they are
_CAUSES = {
    "unreachable": "API unreachable (no connection)",
    "dropped": "connection dropped",
    "timeout": "timed out",
    "429": "throttled (429)",
    "bad_answer": "unreadable answer",
    "generation_failed": "generation failed",
}


def format_retries(retries: dict[str, int]) -> str:
    return ", ".join(f"{_CAUSES.get(c, c)} ×{n}" for c, n in retries.items()) or "none"


def format_summary(
    summary: dict[str, Any], *, max_failures: int = 20, run_dir: object = None
) -> str:
    """`run_dir`: named in the advice (else the summary's own, else RUN_DIR)."""
    lines = [
        f"jobs: {summary['jobs']} "
        f"({format_counts(summary['counts'], summary.get('not_polled', 0))})",
        f"files: {summary['files']} ({size_text(summary.get('bytes', 0))})",
    ]
    if "wall_seconds" in summary:
        lines.append(f"wall time: {summary['wall_seconds']:.1f} s")
    lines.append(f"retries: {format_retries(summary.get('retries', {}))}")
    dups = summary.get("possible_duplicates", 0)
    lines.append(
        f"possibly charged twice: {dups}"
        + (" (submissions sent again after their answer was lost)" if dups else "")
    )
    lines += format_cost(summary.get("cost"))
    for stage, row in (summary.get("stages") or {}).items():  # a pipeline, stage by stage
        lost = (row.get("not_created") or {}).get("parent_failed")
        lost_text = f"; not created: parent failed ({plural(lost, 'parent job')})" if lost else ""
        jobs = plural(row["jobs"], "job")
        lines.append(f"stage {stage}: {jobs} ({format_counts(row['counts'])}){lost_text}")
    if (summary.get("from_archive") or {}).get("jobs"):
        lines.append(archive_text(summary["from_archive"]))
    if summary.get("eta_s"):
        lines.append(f"ETA: about {duration_text(summary['eta_s'])} (from the durations so far)")
    marks = summary.get("marks")
    if marks:
        lines.append(f"marks: keep {marks.get('keep', 0)}, reject {marks.get('reject', 0)}")
    if summary.get("not_in_manifest"):
        lines.append(
            f"not in manifest: {summary['not_in_manifest']} (kept in the state, untouched)"
        )
    failures = summary.get("failures", [])
    if failures:
        lines.append("failures:")
        for f in failures[:max_failures]:
            lines.append(
                f"  #{f['index']:05d} {f['state']}: {f.get('reason') or 'no reason given'}"
            )
        if len(failures) > max_failures:
            lines.append(f"  … and {len(failures) - max_failures} more (status --json lists them)")
    uncertain = summary["counts"].get("uncertain", 0)
    if uncertain:
        where = run_dir or summary.get("run_dir") or "RUN_DIR"
        lines.append(
            f"uncertain: {uncertain} {'job' if uncertain == 1 else 'jobs'} whose submit "
            "answer was lost may exist at the API; "
            f"to submit each once more (it may be charged twice): "
            f"batch-runner resume {where} --resubmit-uncertain"
        )
    if summary.get("error"):
        lines.append(f"stopped: {summary['error']}")
    return "\n".join(lines)


def format_cancelled(result: dict[str, Any], shown: int = 3) -> str:
    """`cancel`'s counts first, then a few of the ids (--json lists them all)."""
    stuck, errors = result["not_cancellable"], result["errors"]
    lines = [
        f"cancelled: {len(result['cancelled'])}, not cancellable: {len(stuck)}"
        + (" (already running or finished)" if stuck else "")
        + f", errors: {len(errors)}"
    ]
    if stuck:
        lines.append(f"  not cancellable: {_few(stuck, shown)}")
    if errors:
        lines.append(f"  errors: {_few(errors, shown, sep='; ')}")
    return "\n".join(lines)


def _few(items: list[str], shown: int, sep: str = ", ") -> str:
    more = len(items) - shown
    return sep.join(items[:shown]) + (f" … and {more} more (--json lists all)" if more > 0 else "")


def format_cost(cost: dict[str, Any] | None) -> list[str]:
    """The summary's money lines: spent, estimated, possible extra, left by the budget."""
    if not cost:
        return []
    line = f"cost: {dollars(cost.get('spent_usd'))} spent"
    line += f" of {dollars(cost.get('estimated_usd'))} estimated"
    extra = cost.get("possible_extra_usd")
    if extra != 0:
        line += f"; possibly {dollars(extra)} more (submissions that may have been charged twice)"
    lines = [line]
    left = cost.get("left_by_budget")
    if left:
        would = left["estimated_usd"]
        advice = (
            f"would cost {dollars(would)}; resume with a larger --max-cost"
            if would is not None  # a job of unknown price never fits any budget
            else "some have no known price, which no budget admits: resume with --no-max-cost"
        )
        lines.append(f"left pending by --max-cost: {plural(left['jobs'], 'job')} ({advice})")
    return lines


def validate_money(
    est: Estimate,
    prices: list[float | None],
    entries: dict[str, CatalogEntry | None],
    max_cost: float | None,
) -> dict[str, Any]:
    """`validate --json`'s money fields beside `estimated_cost_usd` (per model, the budget)."""
    models = {}
    for model, row in est.per_model.items():
        entry = entries.get(model)
        models[model] = dict(row) | {
            "base_price_usd": entry.base_price_usd if entry else None,
            "price_unit": entry.price_unit if entry else None,
            "pricing_note": entry.pricing_note if entry else None,
        }
    out: dict[str, Any] = {"cost": {"models": models, "unknown_jobs": est.unknown}}
    if max_cost is not None:
        n, cost = fitting(prices, max_cost)
        out["max_cost"] = {"usd": max_cost, "jobs_fit": n, "cost_usd": cost}
    return out


def format_estimate(est: Estimate, money: dict[str, Any]) -> str:
    """validate's estimate: the total, each model's price and note, how many jobs fit."""
    lines = [est.text()]
    for model, row in sorted(money["cost"]["models"].items()):
        price = row["base_price_usd"]
        unit = f"{dollars(price)} per {row['price_unit']}" if price is not None else "no price"
        note = f"; {row['pricing_note']}" if row.get("pricing_note") else ""
        jobs = plural(row["jobs"], "job")
        lines.append(f"  {model}: {jobs}, {dollars(row['estimated_cost_usd'])} ({unit}{note})")
    fit = money.get("max_cost")
    if fit:
        lines.append(
            f"--max-cost {dollars(fit['usd'])}: {fit['jobs_fit']} of {plural(est.jobs, 'job')} "
            f"fit ({dollars(fit['cost_usd'])})"
        )
    return "\n".join(lines)


def format_preview(
    jobs: list[JobSpec], *, limit: int = 10, width: int = 60, numbers: list[int] | None = None
) -> str:
    """The first jobs, one line each, numbered from 1 (or by `numbers`)."""
    rows = []
    models = getattr(jobs, "models", None)  # a JobStream (manifest/stream.py) counted them
    several = len(models if models is not None else {job.model for job in jobs}) > 1
    for i, job in zip(numbers or range(1, len(jobs) + 1), jobs[:limit], strict=False):
        prompt = printable(str(job.inputs.get("prompt", "")))
        prompt = prompt if len(prompt) <= width else prompt[: width - 1] + "…"
        prompt = f"{job.model}: {prompt}" if several else prompt
        rest = ", ".join(f"{k}={shown_input(v)}" for k, v in job.inputs.items() if k != "prompt")
        rest = printable(rest)
        copy = f" (copy {job.copy + 1})" if job.copy else ""
        rows.append(f"  {i:5d}  {prompt}{copy}" + (f"  [{rest}]" if rest else ""))
    if len(jobs) > limit:
        rows.append(f"  … {len(jobs) - limit} more")
    return "\n".join(rows)


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (escape sequences, carriage returns, tabs,
    newlines) shown as escapes instead of acted on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
