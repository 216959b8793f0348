"""Pure text formatting for the CLI: summaries, status, validation previews."""

from __future__ import annotations

from typing import Any

from batch_runner.catalog import CatalogEntry
from batch_runner.jobs import JobSpec, shown_input
from batch_runner.money import Estimate, dollars, fitting
from batch_runner.sizes import size_text

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


def format_counts(counts: dict[str, int]) -> str:
    parts = [f"{s} {counts[s]}" for s in STATE_ORDER if counts.get(s)]
    return ", ".join(parts) if parts else "no jobs"


def format_retries(retries: dict[str, int]) -> str:
    return ", ".join(f"{cause} ×{n}" for cause, n in retries.items()) or "none"


def format_summary(summary: dict[str, Any], *, max_failures: int = 20) -> str:
    lines = [
        f"jobs: {summary['jobs']} ({format_counts(summary['counts'])})",
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
    if summary.get("eta_s"):
        lines.append(f"ETA: about {eta_text(summary['eta_s'])} (from the durations so far)")
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
    if summary.get("error"):
        lines.append(f"stopped: {summary['error']}")
    return "\n".join(lines)


def eta_text(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


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
        lines.append(
            f"left pending by --max-cost: {left['jobs']} jobs "
            f"(would cost {dollars(left['estimated_usd'])}; resume with a larger --max-cost)"
        )
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
        lines.append(
            f"  {model}: {row['jobs']} jobs, {dollars(row['estimated_cost_usd'])} ({unit}{note})"
        )
    fit = money.get("max_cost")
    if fit:
        lines.append(
            f"--max-cost {dollars(fit['usd'])}: {fit['jobs_fit']} of {est.jobs} jobs fit "
            f"({dollars(fit['cost_usd'])})"
        )
    return "\n".join(lines)


def format_preview(jobs: list[JobSpec], *, limit: int = 10, width: int = 60) -> str:
    rows = []
    several = len({job.model for job in jobs}) > 1
    for i, job in enumerate(jobs[:limit], 1):
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
