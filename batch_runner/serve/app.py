"""`batch-runner serve RUN_DIR`: an aiohttp.web server over a run directory (datasette's idea:
a read-mostly view of one data file, JSON first, the page drawn from the JSON).

Routes: `GET /` the page, `GET /api/status` the `status --json` object, `GET /api/outputs`
the jobs done last with their files, `POST /api/marks` `{"key", "mark"}` (the one write),
`GET /files/...` outputs, `GET /thumbs/...` thumbnails. Nothing is authenticated: the server
listens on loopback unless told otherwise, refuses Host headers that are not its own there
(a web page elsewhere cannot rebind a name to it), and takes marks only as JSON (a form on
another site cannot post one without a CORS preflight, which is never answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from batch_runner.errors import BatchRunnerError
from batch_runner.serve.page import PAGE
from batch_runner.serve.sync import MarksSync
from batch_runner.serve.view import RunView

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_OUTPUTS = 200
VIEW: web.AppKey[RunView] = web.AppKey("view", RunView)
SYNC: web.AppKey[MarksSync] = web.AppKey("sync", MarksSync)


def make_app(view: RunView, *, loopback: bool = True, sync_delay: float = 2.0) -> web.Application:
    middlewares = [_own_host] if loopback else []
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[VIEW] = view
    app[SYNC] = MarksSync(view, sync_delay)
    app.router.add_get("/", _page)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/outputs", _outputs)
    app.router.add_post("/api/marks", _marks)
    app.router.add_get("/files/{name:.+}", _file)
    app.router.add_get("/thumbs/{name:.+}", _thumb)
    app.on_cleanup.append(_flush)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _own_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    if host not in LOOPBACK:
        return _error(421, f"this server answers as 127.0.0.1 or localhost, not {host!r}")
    return await handler(request)


async def _page(request: web.Request) -> web.Response:
    title = request.app[VIEW].root.name
    return web.Response(text=PAGE.replace("{{TITLE}}", _html(title)), content_type="text/html")


async def _status(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    return _json(await asyncio.to_thread(view.status))


async def _outputs(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    try:
        limit = int(request.query.get("limit", DEFAULT_OUTPUTS))
    except ValueError:
        return _error(400, "limit must be a whole number")

    def read() -> dict[str, Any]:
        return view.outputs(limit) | {"live": view.live()}

    return _json(await asyncio.to_thread(read))


async def _marks(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return _error(415, 'send {"key", "mark"} as application/json')
    try:
        body = json.loads(await request.text())
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("key"), str) or "mark" not in body:
        return _error(400, 'send {"key": JOB_KEY, "mark": "keep" | "reject" | null}')
    key, mark = body["key"], body["mark"]
    if mark not in ("keep", "reject", None):
        return _error(400, f'mark must be "keep", "reject" or null, got {mark!r}')
    view = request.app[VIEW]
    try:
        known = await asyncio.to_thread(view.mark, key, mark)
    except BatchRunnerError as exc:
        return _error(503, str(exc))
    if not known:
        return _error(404, f"no job with key {key!r} in this run directory")
    request.app[SYNC].changed()
    return _json({"key": key, "mark": mark})


async def _file(request: web.Request) -> web.StreamResponse:
    path = request.app[VIEW].file(request.match_info["name"])
    if path is None:
        return _error(404, "no such output file")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def _thumb(request: web.Request) -> web.StreamResponse:
    view = request.app[VIEW]
    name = request.match_info["name"]
    if view.file(name) is None:
        return _error(404, "no such output file")
    sha, size = request.query.get("sha256", ""), request.query.get("bytes", "0")
    thumb = await asyncio.to_thread(_make_thumb, view.root, name, sha, size)
    path = view.file(thumb or name)
    if path is None:
        return _error(404, "no such output file")
    # a thumbnail is named by its original's content: it never changes
    return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})


def _make_thumb(root: Path, name: str, sha: str, size: str) -> str | None:
    from types import SimpleNamespace

    from batch_runner.jobs import FileRecord
    from batch_runner.report.html import IMAGE_EXTS
    from batch_runner.report.thumbs import make_thumbs

    if not size.isdigit():
        return None
    job = SimpleNamespace(files=[FileRecord(name, 0, sha, int(size))])
    return make_thumbs(root, [job], IMAGE_EXTS).get(name)  # type: ignore[list-item]


async def _flush(app: web.Application) -> None:
    await app[SYNC].flush()


def _json(obj: Any, status: int = 200) -> web.Response:
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str)
    headers = {"Cache-Control": "no-store"}
    return web.Response(text=text, status=status, content_type="application/json", headers=headers)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _html(text: str) -> str:
    import html

    return html.escape(text)


async def serve(
    view: RunView, host: str, port: int, *, announce: Callable[[str], None] = print
) -> None:
    """Serve until Ctrl-C or SIGTERM (pending marks are written first)."""
    app = make_app(view, loopback=host in LOOPBACK)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        announce(f"serving {view.root} at http://{shown}:{bound[1]}/ (Ctrl-C to stop)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()
    finally:
        await runner.cleanup()
