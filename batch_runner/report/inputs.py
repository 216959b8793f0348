"""The media inputs of a job in report.html: a thumbnail of each local input image, a link for
other local files (video, audio) and for input URLs (the page fetches nothing from the net)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from batch_runner.jobs import JobRecord, input_files

THUMB = 64  # px: the input is a reminder beside the outputs, not the subject


def inputs_html(rec: JobRecord) -> str:
    """A strip of the job's media inputs ("" when it has none)."""
    items = [_file_item(f) for f in input_files(rec.inputs)]
    items += [_url_item(v) for v in _urls(rec.inputs)]
    return f'<div class="inputs">in: {"".join(items)}</div>' if items else ""


def _file_item(f: dict[str, Any]) -> str:
    path = Path(str(f["local_file"]))
    src = html.escape(path.as_uri()) if path.is_absolute() else html.escape(str(path))
    name = html.escape(path.name)
    if str(f.get("media_type", "")).startswith("image/"):
        return (
            f'<a href="{src}" target="_blank" rel="noopener" title="{name}">'
            f'<img src="{src}" loading="lazy" width="{THUMB}" height="{THUMB}" '
            f'alt="input {name}"></a>'
        )
    return f'<a href="{src}" target="_blank" rel="noopener">{name}</a>'


def _url_item(url: str) -> str:
    name = html.escape(url.rstrip("/").rsplit("/", 1)[-1] or url)
    return f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{name}</a>'


def _urls(inputs: dict[str, Any]) -> list[str]:
    """Input values that are media URLs (strings naming a file over https)."""
    out = []
    for value in inputs.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v.startswith(("https://", "http://")) and " " not in v:
                out.append(v)
    return out
