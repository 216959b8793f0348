"""GET/HEAD /files/{seq}/{k}.{ext}: output files with Range support, expiry and file faults.

No token is needed (the Authorization header is ignored but counted). Expired URLs answer 403
or 404 with an S3-style XML error body, like the storage hosts that sign them.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from batch_runner.simulator import hostile
from batch_runner.simulator.faults import DropResponse, Faults, TruncatedResponse
from batch_runner.simulator.images import CONTENT_TYPES, EXTENSIONS, FORMATS, FileCache
from batch_runner.simulator.store import JobStore, SimJob

_NAME = re.compile(r"^(\d+)\.(png|jpg|webp|mp4|wav)$")
_FORCED = ("mp4", "wav")  # output_style video*/audio* serve these for any job
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_XML = "application/xml"
_HUE_STEP = 5  # files of one job get neighbouring hues, so they differ


def _xml_error(status: int, code: str, message: str) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
    body += f"<Message>{message}</Message></Error>"
    return web.Response(status=status, text=body, content_type=_XML)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """(start, end-exclusive) for a single "bytes=" range; None when absent or unusable
    (serve the whole file); False when unsatisfiable (416)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match[1] == match[2] == "":
        return None  # several ranges or garbage: a plain 200 is a valid answer
    if match[1] == "":  # suffix: the last N bytes
        tail = int(match[2])
        return (max(0, size - tail), size) if tail > 0 else False
    start = int(match[1])
    end = min(size, int(match[2]) + 1) if match[2] else size
    if start >= size or end <= start:
        return False
    return start, end


class FileServer:
    """Serves the files that /result URLs point at."""

    def __init__(self, store: JobStore, faults: Faults):
        self.store = store
        self.faults = faults
        self.cache = FileCache()

    def _note(self, request: web.Request) -> str | None:
        stats = self.store.stats
        stats.requests["file"] += 1
        if "Authorization" in request.headers:
            stats.file_requests_with_auth += 1
        case = hostile.case_for(self.store.config, "file")
        if case == "echo_headers":
            stats.file_request_headers.append(dict(request.headers))
        return case

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one file request (GET or HEAD), after `file_delay` seconds."""
        stats = self.store.stats
        stats.files_serving += 1
        stats.max_files_serving = max(stats.max_files_serving, stats.files_serving)
        try:
            if self.store.config.file_delay:
                await asyncio.sleep(self.store.config.file_delay)
            return self._answer(request)
        finally:
            stats.files_serving -= 1

    def _answer(self, request: web.Request) -> web.StreamResponse:
        case = self._note(request)
        redirect = hostile.file_redirect(case, request)
        if redirect is not None:
            return redirect
        if self.faults.drop():
            return DropResponse()
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        job, k, ext = found
        fmt = FORMATS[ext]
        width, height = (job.width, job.height) if fmt == job.fmt else _forced_size(fmt)
        pad_to = self.store.config.pad_bytes
        body = self.cache.get(fmt, job.bucket + _HUE_STEP * (k - 1), width, height, pad_to)
        if case == "bad_file":
            body = hostile.BAD_FILE
        return self._send(request, body, CONTENT_TYPES[fmt])

    def _find(self, request: web.Request) -> tuple[SimJob, int, str] | web.Response:
        info = request.match_info
        found = self._lookup(info["seq"], info["name"], request.query.get("exp"))
        if isinstance(found[0], SimJob):
            return found  # type: ignore[return-value]
        status, code, message = found
        return _xml_error(int(status), str(code), str(message))

    def url_problem(self, url: str) -> str | None:
        """Why one of its own file URLs, sent as a media input, cannot be fetched (None when
        it can): the same answer a GET would have had (CONTRACT §5)."""
        parts = urlsplit(url)
        match = re.fullmatch(r"/files/([^/]+)/([^/]+)", parts.path)
        if match is None:
            return "HTTP 404 (NoSuchKey)"
        found = self._lookup(match[1], match[2], parse_qs(parts.query).get("exp", [None])[0])
        if isinstance(found[0], SimJob):
            return None
        status, code, message = found
        return f"HTTP {status} ({code}: {message})"

    def _lookup(
        self, seq: str, name: str, exp: str | None
    ) -> tuple[SimJob, int, str] | tuple[int, str, str]:
        """The file a URL names, or (status, code, message) of its refusal."""
        missing = (404, "NoSuchKey", "The specified key does not exist.")
        match = _NAME.match(name)
        job = self.store.by_seq(int(seq)) if seq.isdigit() else None
        if match is None or job is None or job.status != "completed":
            return missing
        k, ext = int(match[1]), match[2]
        if not 1 <= k <= job.n_files or (ext not in _FORCED and ext != EXTENSIONS[job.fmt]):
            return missing
        if self.store.expired(job):
            self.faults.count("url_expired")
            return missing
        if _past(exp):
            self.faults.count("url_expired")
            status = self.faults.expired_status()
            return status, "AccessDenied" if status == 403 else "NoSuchKey", "Request has expired"
        return job, k, ext

    def _send(self, request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
        headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
        span = byte_range(request.headers.get("Range"), len(body))
        if span is False:
            headers["Content-Range"] = f"bytes */{len(body)}"
            return web.Response(status=416, headers=headers)
        status = 200
        if span:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
            body, status = body[start:end], 206
        if request.method == "GET":
            cut = self.faults.truncate_at(len(body))
            if cut is not None:
                return TruncatedResponse(body, cut, status=status, headers=headers)
        return web.Response(body=body, status=status, headers=headers)


def _forced_size(fmt: str) -> tuple[int, int]:
    return (1000, 0) if fmt == "wav" else (32, 32)  # a WAV's width is its milliseconds


def _past(exp: str | None) -> bool:
    if exp is None:
        return False
    try:
        return time.monotonic() > float(exp)
    except ValueError:
        return True  # a tampered expiry is as good as expired
