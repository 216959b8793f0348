"""The pieces of report.html every section uses: cards, media, the settings list, escaping."""

from __future__ import annotations

import contextvars
import functools
import html
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from batch_runner.jobs import FileRecord, JobRecord, JobState, shown_input
from batch_runner.money import dollars
from batch_runner.report.inputs import inputs_html

CARD_SIZE = 256  # intrinsic size hint for card thumbnails; CSS scales them into square boxes
CELL_SIZE = 140  # the same for grid cells (must match SIZE in report_assets.JS)
ROW_SIZE = 48  # the same for the rows of a section too big for cards
IMAGE_EXTS = {"png", "jpg", "jpeg", "webp", "gif", "avif", "bmp"}
VIDEO_EXTS = {"mp4", "webm", "mov", "m4v"}
AUDIO_EXTS = {"wav", "mp3", "flac", "ogg", "m4a", "aac", "opus"}
_URL_PLAIN = re.compile(r"[A-Za-z0-9_.~/-]+")  # characters quote() keeps as they are
_HTML_SPECIAL = re.compile("[&<>\"']")


def escape(text: str) -> str:
    """html.escape (quotes included), returning text with nothing to escape as it is."""
    return html.escape(text) if _HTML_SPECIAL.search(text) else text


def section_head(name: str, sub: str) -> str:
    return f'<h2>{escape(name)}</h2><p class="sub">{escape(sub)}</p>'


def job_label(rec: JobRecord) -> str:
    """How the page names a job: `#3`, or `shard-1-of-4 #3` over merged shards (each shard
    numbers its own jobs, as in its file names)."""
    return f"{rec.shard} #{rec.index}" if rec.shard else f"#{rec.index}"


def job_anchor(rec: JobRecord) -> str:
    """The element id of a job's card or row, unique on the page."""
    return f"job-{rec.shard}-{rec.index}" if rec.shard else f"job-{rec.index}"


def render_cards(records: list[JobRecord], *, ids: bool = True) -> str:
    return '<div class="cards">' + "".join(render_card(r, ids=ids) for r in records) + "</div>"


def render_card(rec: JobRecord, *, ids: bool = True) -> str:
    """A job's card; `ids=False` when the same job has a card with its id elsewhere on the
    page (a pipeline's sweep shown again under the chains)."""
    state = rec.state.value
    n = min(len(rec.files), 3)
    style = f' style="--n:{n}"' if n > 1 else ""
    label = job_label(rec)
    media = "".join(media_html(f, label, CARD_SIZE) for f in rec.files)
    if not rec.files:
        media = placeholder(rec)
    prompt = rec.inputs.get("prompt")
    prompt_html = (
        f'<p class="prompt">{escape(show_value(prompt))}</p>' if prompt is not None else ""
    )
    # without files the placeholder already shows the reason
    reason = f'<p class="reason">{escape(rec.reason)}</p>' if rec.reason and rec.files else ""
    rid = f" · {escape(rec.request_ids[-1])}" if rec.request_ids else ""
    anchor = f' id="{job_anchor(rec)}"' if ids else ""
    stage = f'<span class="stage">{escape(rec.stage)}</span>' if rec.stage else ""
    return (
        f'<div class="card s-{state}"{anchor}>'
        f'<div class="media"{style}>{media}</div><div class="body">'
        f'<div class="line1"><span class="idx">{escape(label)}</span>{stage}'
        f'<span class="badge s-{state}">{state}</span>{mark_html(rec)}{cost_html(rec)}</div>'
        f'<p class="model">{breakable(rec.model)}</p>'
        f"{prompt_html}{inputs_html(rec)}{kv_list(rec)}{reason}"
        f'<div class="foot">{escape(rec.key)}{rid}</div></div></div>'
    )


def breakable(text: str) -> str:
    """Escaped text that may wrap after each '/' and nowhere inside a word (model ids such as
    `bytedance/seedream-5/lite/text-to-image`; browsers also wrap after '-')."""
    return escape(text).replace("/", "/<wbr>")


def mark_html(rec: JobRecord) -> str:
    """The keep/reject mark set in `serve`, when there is one."""
    if rec.mark is None:
        return ""
    mark = escape(rec.mark)
    return f'<span class="badge m-{mark}" title="marked in serve">{mark}</span>'


def cost_html(rec: JobRecord) -> str:
    """What the job cost (the API's figure), when known."""
    if rec.cost_usd is None:
        return ""
    return f'<span class="cost" title="cost of this job">{dollars(rec.cost_usd)}</span>'


def kv_pairs(rec: JobRecord) -> list[tuple[str, str]]:
    pairs = [(k, show_value(v)) for k, v in rec.inputs.items() if k != "prompt"]
    pairs += [(f"meta.{k}", show_value(v)) for k, v in rec.meta.items()]
    pairs += [(f"vars.{k}", show_value(v)) for k, v in rec.vars.items()]
    if rec.copy:
        pairs.append(("copy", str(rec.copy)))
    return pairs


def kv_list(rec: JobRecord) -> str:
    return _kv_html(tuple(kv_pairs(rec)))


@functools.lru_cache(maxsize=256)  # the jobs of a run mostly share their settings
def _kv_html(pairs: tuple[tuple[str, str], ...]) -> str:
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs)
    return f'<dl class="kv">{rows}</dl>' if rows else ""


def placeholder_reason(rec: JobRecord) -> str:
    return rec.reason or ("no files" if rec.state is JobState.DONE and not rec.files else "")


def placeholder(rec: JobRecord) -> str:
    reason = placeholder_reason(rec)
    span = f"<span>{escape(reason)}</span>" if reason else ""
    return f'<div class="ph"><b>{rec.state.value}</b>{span}</div>'


# file_name → its thumbnail (relative to RUN_DIR), set while write_report renders a run
THUMBS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "THUMBS", default=None
)


def thumb_url(f: FileRecord) -> str | None:
    thumb = (THUMBS.get() or {}).get(f.file_name)
    return file_url(thumb) if thumb else None


def media_html(f: FileRecord, alt: str, size: int) -> str:
    src = escape(file_url(f.file_name))
    kind = media_kind(f.file_name)
    if kind == "img":
        shown = escape(thumb_url(f) or file_url(f.file_name))
        return (
            f'<a class="thumb" href="{src}" target="_blank" rel="noopener">'
            f'<img src="{shown}" loading="lazy" decoding="async" width="{size}" height="{size}" '
            f'alt="{escape(alt)}"></a>'
        )
    if kind == "video":  # metadata only: the first frame and the length, not the film
        return (
            f'<div class="thumb"><video src="{src}" preload="metadata" controls muted '
            f'width="{size}" height="{size}"></video></div>'
        )
    if kind == "audio":
        name = escape(f.file_name.rsplit("/", 1)[-1])
        return (
            f'<div class="thumb audio"><audio src="{src}" preload="metadata" controls></audio>'
            f'<a href="{src}" target="_blank" rel="noopener">{name}</a></div>'
        )
    name = escape(f.file_name.rsplit("/", 1)[-1])
    return f'<a class="thumb file" href="{src}" target="_blank" rel="noopener">{name}</a>'


# ---------------------------------------------------------------- small helpers


def show_value(value: Any) -> str:
    value = shown_input(value)  # a local input file by its path
    if value is None:
        return "\u2014"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def file_url(file_name: str) -> str:
    """A relative URL for a path relative to the run directory (each component quoted)."""
    if _URL_PLAIN.fullmatch(file_name):
        return file_name  # nothing quote() would change
    return "/".join(quote(part) for part in file_name.replace("\\", "/").split("/"))


def media_kind(file_name: str) -> str:
    ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if ext in IMAGE_EXTS:
        return "img"
    return "video" if ext in VIDEO_EXTS else "audio" if ext in AUDIO_EXTS else "file"


def json_for_script(data: Any) -> str:
    # inside <script> only "<" can end the element early ("</script>", "<!--")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
