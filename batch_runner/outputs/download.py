"""Streaming file downloads: allowed hosts only, no credentials, `.part` file, checks, rename.

A file reaches its final name only complete and verified (size, signature); on any failure
its `.part` file is removed. Redirects are followed by hand so every hop is checked against
the host policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from batch_runner.api.answers import per_origin, retry_after_from
from batch_runner.api.deadlines import Deadlines
from batch_runner.errors import DownloadError
from batch_runner.outputs.embed import JPEG_SOI, PNG_SIGNATURE, jpeg_com_segment, png_text_chunk

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PNG_HEAD = 33  # signature (8) + IHDR chunk (25): where a text chunk may go
_URL_UNSAFE = frozenset(' "<>\\^`{|}')


@dataclass(frozen=True)
class Downloaded:
    """A file in place under its final name, described as written."""

    path: Path
    sha256: str
    bytes: int
    ext: str
    name: str  # the path relative to the images folder, with "/" separators


class HostPolicy:
    """Which file URLs may be fetched: exact hostnames and `*.suffix` wildcards, http(s) only."""

    def __init__(self, allowed: list[str], *, require_https: bool = False):
        self.require_https = require_https
        self._known: dict[tuple[str, str], bool] = {}
        self._exact: set[str] = set()
        self._suffixes: list[str] = []
        for host in allowed:
            host = host.strip().lower().rstrip(".")
            if host.startswith("*."):
                self._suffixes.append(
                    host[1:]
                )  # keep the dot: "*.x.net" must not match "evilx.net"
            elif host:
                self._exact.add(host)

    def allows(self, url: str) -> bool:
        """True when `url` may be downloaded (scheme and host both allowed)."""
        return per_origin(self._known, url, self._allows)  # depends on nothing else

    def _allows(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except (ValueError, TypeError, AttributeError):
            return False
        schemes = ("https",) if self.require_https else ("http", "https")
        if parts.scheme.lower() not in schemes or not host or parts.username is not None:
            return False
        return host in self._exact or any(host.endswith(s) for s in self._suffixes)


def _url(url: str) -> URL:
    # a presigned URL must reach the server byte for byte; only quote what is not valid as is
    if url.isascii() and not _URL_UNSAFE.intersection(url):
        return URL(url, encoded=True)
    return URL(url)


def _sniff(head: bytes) -> str | None:
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


def _embedded_head(head: bytes, ext: str, parameters: str | None, url: str) -> bytes:
    """The first bytes as written: with the parameters text inserted for PNG and JPEG."""
    if parameters is None:
        return head
    if ext == "png":
        if head[12:16] != b"IHDR" or head[8:12] != b"\x00\x00\x00\x0d":
            raise DownloadError(f"not a valid PNG (no IHDR first): {url}", kind="bad_file")
        return head[:_PNG_HEAD] + png_text_chunk("parameters", parameters) + head[_PNG_HEAD:]
    if ext == "jpg":
        return JPEG_SOI + jpeg_com_segment(parameters) + head[len(JPEG_SOI) :]
    return head


@functools.lru_cache(maxsize=64)
def _resolved(images_dir: Path) -> Path:
    return images_dir.resolve()


_part_numbers = itertools.count(1)


def _final_path(images_dir: Path, name: str) -> tuple[Path, str]:
    """Where `name` goes under `images_dir`, and its relative posix form; refuses escapes."""
    root = _resolved(images_dir)
    if "/" not in name and name not in ("", ".", ".."):
        return root / name, name  # the usual plain file name: no further path arithmetic
    if not name or Path(name).is_absolute():
        raise DownloadError(f"file name {name!r} is outside the images folder", kind="bad_name")
    final = root / name
    # no lstat of `final` here (it would wait behind file creations in the folder): a symlink
    # planted at the final name is harmless, the rename replaces the link, not its target
    if ".." in final.parts[len(root.parts) :] or final.parent != root:
        final = final.resolve()  # the slow, careful way for anything unusual
    if not final.is_relative_to(root) or final == root:
        raise DownloadError(f"file name {name!r} is outside the images folder", kind="bad_name")
    return final, final.relative_to(root).as_posix()


def _status_error(resp: aiohttp.ClientResponse, url: str) -> DownloadError:
    status = resp.status
    if status in (403, 404, 410):
        kind = "expired_url"
    elif status == 429:
        kind = "429"
    elif status >= 500:
        kind = "5xx"
    else:
        kind = "4xx"
    retry_after = retry_after_from(resp.headers, None)
    return DownloadError(
        f"HTTP {status} for {url}", status=status, kind=kind, retry_after=retry_after
    )


# the download as a whole is limited by Deadlines (one timer for every call in flight);
# aiohttp only limits opening a new connection
_CONNECT_ONLY = aiohttp.ClientTimeout(total=None, sock_connect=30.0)


async def _open(
    session: aiohttp.ClientSession, url: str, hosts: HostPolicy
) -> tuple[aiohttp.ClientResponse, str]:
    """GET `url`, following at most MAX_REDIRECTS redirects, each to an allowed host."""
    for _ in range(MAX_REDIRECTS + 1):
        if not hosts.allows(url):
            raise DownloadError(f"download host not allowed: {url}", kind="host_refused")
        try:
            target = _url(url)
        except (ValueError, UnicodeError):
            raise DownloadError(f"malformed file URL: {url!r}", kind="bad_url") from None
        resp = await session.get(target, allow_redirects=False, timeout=_CONNECT_ONLY)
        if resp.status not in _REDIRECTS:
            return resp, url
        location = resp.headers.get("Location")
        resp.release()
        if not location:
            raise DownloadError(f"redirect without a Location from {url}", kind="bad_redirect")
        url = urljoin(url, location)
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", kind="bad_redirect")


class _Sink:
    """Collects the body for the .part file while hashing and counting what was written.

    Small bodies stay in memory and reach the disk in one blocking call when the sink is
    finished (cheaper than thread hops, measured); past BUFFER bytes the file is opened and
    every chunk is written on a worker thread, so a big file never holds more than a chunk in
    memory.
    """

    BUFFER = 1 << 20

    def __init__(self, part: str):
        self.part = part
        self.hash = hashlib.sha256()
        self.size = 0
        self._pending: list[bytes] = []
        self._file = None

    async def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.size += len(data)
        if self._file is None:
            self._pending.append(data)
            if self.size <= self.BUFFER:
                return
            import aiofiles  # only big files need it (saves its import for the rest)

            await asyncio.to_thread(os.makedirs, os.path.dirname(self.part), exist_ok=True)
            self._file = await aiofiles.open(self.part, "wb")
            data, self._pending = b"".join(self._pending), []
        await self._file.write(data)

    async def finish(self, final: Path) -> None:
        """Put the complete body in place under `final`."""
        if self._file is None:  # a few KB: one blocking call costs less than a thread hop
            _write_then_rename(self.part, final, b"".join(self._pending))
            return
        file, self._file = self._file, None
        await file.close()
        await asyncio.to_thread(os.replace, self.part, final)

    async def discard(self) -> None:
        """Remove the partial file (the body was refused or could not be written)."""
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                await file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.part)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _write_then_rename(part: str, final: Path, body: bytes) -> None:
    """Write `body` to `part` and rename it to `final` (os calls: no buffered file object)."""
    try:
        fd = os.open(part, _CREATE, 0o666)
    except FileNotFoundError:  # a new folder (or one removed during the run)
        os.makedirs(os.path.dirname(part), exist_ok=True)
        fd = os.open(part, _CREATE, 0o666)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(part, final)


async def _read_head(resp: aiohttp.ClientResponse, chunk_size: int) -> tuple[bytes, bytes]:
    """At least _PNG_HEAD bytes (unless the body is shorter), split into (head, rest)."""
    buf = b""
    while len(buf) < _PNG_HEAD:
        chunk = await resp.content.read(chunk_size)
        if not chunk:
            break
        buf += chunk
    return buf[:_PNG_HEAD], buf[_PNG_HEAD:]


async def _stream(
    resp: aiohttp.ClientResponse,
    url: str,
    *,
    images_dir: Path,
    name_for: Callable[[str], str],
    max_bytes: int,
    parameters: str | None,
    chunk_size: int,
) -> Downloaded:
    expected = resp.content_length
    if expected is not None and expected > max_bytes:
        raise DownloadError(f"file too large ({expected} bytes > {max_bytes})", kind="too_big")
    if expected is not None and expected <= _Sink.BUFFER:  # the usual image: read it at once
        body = await resp.read()
        head, rest = body[:_PNG_HEAD], body[_PNG_HEAD:]
    else:
        head, rest = await _read_head(resp, chunk_size)
    received = len(head) + len(rest)
    ext = _sniff(head)
    if ext is None:
        if expected is not None and received < expected:
            raise DownloadError(f"download cut short: {url}", kind="truncated")
        raise DownloadError(f"not a PNG, JPEG, MP4 or WEBM file: {url}", kind="bad_file")
    final, relative = _final_path(images_dir, name_for(ext))
    part = f"{final}.{os.getpid()}-{next(_part_numbers)}.part"
    if received == expected:  # the whole body is here (the usual small file): write it at once
        data = _embedded_head(head, ext, parameters, url) + rest
        try:
            _write_then_rename(part, final, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise
        return Downloaded(final, hashlib.sha256(data).hexdigest(), len(data), ext, relative)
    sink = _Sink(part)
    try:
        await sink.write(_embedded_head(head, ext, parameters, url))
        await sink.write(rest)
        async for chunk in resp.content.iter_chunked(chunk_size):
            received += len(chunk)
            if received > max_bytes:
                raise DownloadError(f"file larger than {max_bytes} bytes", kind="too_big")
            await sink.write(chunk)
        if received > max_bytes:
            raise DownloadError(f"file larger than {max_bytes} bytes", kind="too_big")
        if expected is not None and received != expected:
            raise DownloadError(
                f"download cut short ({received} of {expected} bytes): {url}", kind="truncated"
            )
        await sink.finish(final)
    except BaseException:
        await sink.discard()
        raise
    return Downloaded(final, sink.hash.hexdigest(), sink.size, ext, relative)


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    images_dir: Path,
    name_for: Callable[[str], str],
    hosts: HostPolicy,
    max_bytes: int = 2**31,
    parameters: str | None = None,
    chunk_size: int = 1 << 16,
    timeout: float = 300.0,
    deadlines: Deadlines | None = None,
) -> Downloaded:
    """Fetch `url` into `images_dir / name_for(ext)`, verified; `parameters` is embedded as text.

    `session` must carry no credentials: file hosts never see the API token. The whole
    download must end within `timeout` seconds (pass the run's `deadlines` to share a timer).
    """
    try:
        with (deadlines or Deadlines()).limit(timeout):
            resp, final_url = await _open(session, url, hosts)
            async with resp:
                if resp.status != 200:
                    raise _status_error(resp, final_url)
                return await _stream(
                    resp,
                    final_url,
                    images_dir=images_dir,
                    name_for=name_for,
                    max_bytes=max_bytes,
                    parameters=parameters,
                    chunk_size=chunk_size,
                )
    except aiohttp.ClientConnectorError as exc:
        raise DownloadError(f"cannot connect: {url} ({exc})", sent=False, kind="dropped") from None
    except aiohttp.ClientPayloadError:
        raise DownloadError(f"download cut short: {url}", kind="truncated") from None
    except TimeoutError:
        raise DownloadError(f"download timed out: {url}", kind="timeout") from None
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise DownloadError(
            f"connection lost ({type(exc).__name__}): {url}", kind="dropped"
        ) from None
