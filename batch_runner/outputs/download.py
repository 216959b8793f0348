"""Streaming file downloads: allowed hosts only, no credentials, `.part` file, checks, rename.

A file reaches its final name only complete and verified (its type sniffed from its bytes and
one the model makes, its length, its structure: `media`), in the folder of its media kind
(images/, videos/, audio/); on any failure its `.part` file is removed (`files.PartFile`).
Redirects are followed by hand so every hop is checked against the host policy. aiohttp's
errors become `DownloadError` in one place, `_translated`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from batch_runner.api.deadlines import Deadlines
from batch_runner.api.http import retry_after_from
from batch_runner.errors import DownloadError, ErrorKind
from batch_runner.outputs.embed import JPEG_SOI, jpeg_com_segment, png_text_chunk
from batch_runner.outputs.files import PartFile
from batch_runner.outputs.hosts import HostPolicy
from batch_runner.outputs.media import HEAD, NAMES, check, folder_of, in_memory, kind_of, sniff

__all__ = ["Downloaded", "HostPolicy", "download"]

_K = ErrorKind
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PNG_HEAD = 33  # signature (8) + IHDR chunk (25): where a text chunk may go
_URL_UNSAFE = frozenset(' "<>\\^`{|}')
ONE_READ = 1 << 20  # a body of known length up to this is read in one call (the usual image)


@dataclass(frozen=True)
class Downloaded:
    """A file in place under its final name, described as written."""

    path: Path
    sha256: str
    bytes: int
    ext: str
    name: str  # the path relative to the run directory, e.g. "videos/00001-fox.mp4"
    media_type: str = "image"  # image, video or audio


def _url(url: str) -> URL:
    # a presigned URL must reach the server byte for byte; only quote what is not valid as is
    if url.isascii() and not _URL_UNSAFE.intersection(url):
        return URL(url, encoded=True)
    return URL(url)


def _embedded_head(head: bytes, ext: str, parameters: str | None, url: str) -> bytes:
    """The first bytes as written: with the parameters text inserted for PNG and JPEG."""
    if parameters is None:
        return head
    if ext == "png":
        if head[12:16] != b"IHDR" or head[8:12] != b"\x00\x00\x00\x0d":
            raise DownloadError(f"not a valid PNG (no IHDR first): {url}", kind=_K.BAD_FILE)
        return head[:_PNG_HEAD] + png_text_chunk("parameters", parameters) + head[_PNG_HEAD:]
    if ext == "jpg":
        return JPEG_SOI + jpeg_com_segment(parameters) + head[len(JPEG_SOI) :]
    return head


@functools.lru_cache(maxsize=64)
def _resolved(images_dir: Path) -> Path:
    return images_dir.resolve()


def final_path(folder: Path, name: str) -> tuple[Path, str]:
    """Where `name` goes under `folder`, and its relative posix form; refuses escapes (a
    file taken from an archive is placed by it too: run/archived.py)."""
    root = _resolved(folder)
    if "/" not in name and name not in ("", ".", ".."):
        return root / name, name  # the usual plain file name: no further path arithmetic
    if not name or Path(name).is_absolute():
        raise DownloadError(f"file name {name!r} is outside its output folder", kind=_K.BAD_NAME)
    final = root / name
    # no lstat of `final` here (it would wait behind file creations in the folder): a symlink
    # planted at the final name is harmless, the rename replaces the link, not its target
    if ".." in final.parts[len(root.parts) :] or final.parent != root:
        final = final.resolve()  # the slow, careful way for anything unusual
    if not final.is_relative_to(root) or final == root:
        raise DownloadError(f"file name {name!r} is outside its output folder", kind=_K.BAD_NAME)
    return final, final.relative_to(root).as_posix()


def _status_error(resp: aiohttp.ClientResponse, url: str) -> DownloadError:
    status = resp.status
    if status in (403, 404, 410):
        kind = _K.EXPIRED_URL
    elif status == 429:
        kind = _K.THROTTLED
    elif status >= 500:
        kind = _K.HTTP_5XX
    else:
        kind = _K.HTTP_4XX
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
            raise DownloadError(f"download host not allowed: {url}", kind=_K.HOST_REFUSED)
        try:
            target = _url(url)
        except (ValueError, UnicodeError) as exc:
            raise DownloadError(f"malformed file URL: {url!r}", kind=_K.BAD_URL) from exc
        resp = await session.get(target, allow_redirects=False, timeout=_CONNECT_ONLY)
        if resp.status not in _REDIRECTS:
            return resp, url
        location = resp.headers.get("Location")
        resp.release()
        if not location:
            raise DownloadError(f"redirect without a Location from {url}", kind=_K.BAD_REDIRECT)
        url = urljoin(url, location)
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", kind=_K.BAD_REDIRECT)


async def _read_head(resp: aiohttp.ClientResponse, chunk_size: int) -> bytes:
    """The first bytes: at least HEAD of them (unless the body is shorter), or all of a small
    body (the usual image: one read)."""
    expected = resp.content_length
    if expected is not None and expected <= ONE_READ:
        return await resp.read()
    buf = b""
    while len(buf) < HEAD:
        chunk = await resp.content.read(chunk_size)
        if not chunk:
            break
        buf += chunk
    return buf


def _file_type(first: bytes, expected: int | None, expect: frozenset[str] | None, url: str) -> str:
    """The type the bytes show, refused when unknown or of a kind the model does not make."""
    ext = sniff(first[:HEAD])
    if ext is None:
        if expected is not None and len(first) < expected and len(first) < HEAD:
            raise DownloadError(f"download cut short: {url}", kind=_K.TRUNCATED)
        raise DownloadError(f"not a {NAMES} file: {url}", kind=_K.BAD_FILE)
    if expect and kind_of(ext) not in expect:
        makes = " or ".join(sorted(expect))
        raise DownloadError(
            f"a {kind_of(ext)} file ({ext}) from a model that makes {makes}: {url}",
            kind=_K.BAD_FILE,
        )
    return ext


@dataclass(frozen=True)
class _Target:
    """Where and how a download is written."""

    run_dir: Path
    name_for: Callable[[str], str]
    max_bytes: int
    parameters: str | None
    chunk_size: int
    expect: frozenset[str] | None  # media kinds the model makes (None: any)


async def _stream(resp: aiohttp.ClientResponse, url: str, to: _Target) -> Downloaded:
    """The body into its part file: type, then bytes as they come, length, structure, rename."""
    expected = resp.content_length
    if expected is not None and expected > to.max_bytes:
        raise DownloadError(f"file too large ({expected} bytes > {to.max_bytes})", kind=_K.TOO_BIG)
    first = await _read_head(resp, to.chunk_size)
    received = len(first)
    ext = _file_type(first, expected, to.expect, url)
    folder = folder_of(ext)
    final, relative = final_path(to.run_dir / folder, to.name_for(ext))
    part = PartFile(final)
    try:
        # what was read so far (the whole of the usual image) is written here, at once: a
        # thread hop would cost more; anything after it is written off the loop (aiofiles)
        written = _embedded_head(first[:_PNG_HEAD], ext, to.parameters, url) + first[_PNG_HEAD:]
        part.write(written)
        streamed = False
        async for chunk in resp.content.iter_chunked(to.chunk_size):
            received += len(chunk)
            streamed = True
            if received > to.max_bytes:
                raise DownloadError(f"file larger than {to.max_bytes} bytes", kind=_K.TOO_BIG)
            await part.awrite(chunk)
        if received > to.max_bytes:
            raise DownloadError(f"file larger than {to.max_bytes} bytes", kind=_K.TOO_BIG)
        if expected is not None and received != expected:
            raise DownloadError(
                f"download cut short ({received} of {expected} bytes): {url}", kind=_K.TRUNCATED
            )
        flaw = check(ext, part.read_at if streamed else in_memory(written), part.size)
        if flaw is not None:
            raise DownloadError(f"not a valid {ext.upper()} file ({flaw}): {url}", kind=_K.BAD_FILE)
        part.commit()
    except BaseException:
        part.discard()
        raise
    return Downloaded(final, part.sha256, part.size, ext, f"{folder}/{relative}", kind_of(ext))


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    run_dir: Path,
    name_for: Callable[[str], str],
    hosts: HostPolicy,
    max_bytes: int = 2**31,
    parameters: str | None = None,
    chunk_size: int = 1 << 16,
    timeout: float = 300.0,
    deadlines: Deadlines | None = None,
    expect: frozenset[str] | None = None,
) -> Downloaded:
    """Fetch `url` into `run_dir / FOLDER / name_for(ext)`, verified; `parameters` is embedded
    as text in PNG and JPEG files. FOLDER is images, videos or audio by the file's own type;
    `expect` names the media kinds the model makes (another kind fails the download).

    `session` must carry no credentials: file hosts never see the API token. The whole
    download must end within `timeout` seconds (pass the run's `deadlines` to share a timer).
    """
    to = _Target(run_dir, name_for, max_bytes, parameters, chunk_size, expect)
    try:
        with (deadlines or Deadlines()).limit(timeout):
            resp, final_url = await _open(session, url, hosts)
            async with resp:
                if resp.status != 200:
                    raise _status_error(resp, final_url)
                return await _stream(resp, final_url, to)
    except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
        raise _translated(exc, url) from exc


def _translated(exc: Exception, url: str) -> DownloadError:
    """The one place an aiohttp or socket error of a download becomes ours."""
    match exc:
        case aiohttp.ClientConnectorError():
            return DownloadError(f"cannot connect: {url} ({exc})", sent=False, kind=_K.DROPPED)
        case aiohttp.ClientPayloadError():
            return DownloadError(f"download cut short: {url}", kind=_K.TRUNCATED)
        case TimeoutError():
            return DownloadError(f"download timed out: {url}", kind=_K.TIMEOUT)
        case _:
            name = type(exc).__name__
            return DownloadError(f"connection lost ({name}): {url}", kind=_K.DROPPED)
