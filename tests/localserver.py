"""A tiny aiohttp.web server for client and download tests: one handler for every path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """Answers every path with `handler`, recording what each request carried."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1"):
        self.handler, self.host = handler, host
        self.seen: list[dict] = []

    async def _any(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        return await self.handler(request)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        return f"http://{self.host}:{site._server.sockets[0].getsockname()[1]}"
