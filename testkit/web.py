"""A stand-in for the public web, for members' image links: an aiohttp server on 127.0.0.2.

The bot refuses links into loopback and private networks; tests let it reach this one address
(``IMAGE_URL_ALLOWED_NETWORKS=127.0.0.2/32``), which then stands for a public image host, while
127.0.0.1 (where the Discord fake and the emulator listen) stays refused.

Routes: ``/cat.png`` (a good picture), ``/page.png`` (an HTML page served as ``image/png``),
``/huge.png`` (50 MB streamed without a length), ``/to?url=…`` (a 302 to any URL),
``/loop`` (redirects to itself); every request is recorded with the bytes it was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from testkit.images import picture

HOST: Final = "127.0.0.2"
ALLOW: Final = f"{HOST}/32"
HUGE: Final = 50 * 1024 * 1024
PAGE: Final = b"<!doctype html><html><body><img src='cat.png'></body></html>"


@dataclass
class Served:
    path: str
    sent: int  # body bytes written before the client went away or the body ended


@dataclass
class PublicWeb:
    picture: bytes = field(default_factory=lambda: picture(320, 180))
    served: list[Served] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    async def __aenter__(self) -> PublicWeb:
        app = web.Application()
        app.router.add_get("/cat.png", self._cat)
        app.router.add_get("/page.png", self._page)
        app.router.add_get("/huge.png", self._huge)
        app.router.add_get("/to", self._to)
        app.router.add_get("/loop", self._loop)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _cat(self, request: web.Request) -> web.Response:
        self.served.append(Served(request.path, len(self.picture)))
        return web.Response(body=self.picture, content_type="image/png")

    async def _page(self, request: web.Request) -> web.Response:
        self.served.append(Served(request.path, len(PAGE)))
        return web.Response(body=PAGE, content_type="image/png")  # lies about what it is

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        served = Served(request.path, 0)
        self.served.append(served)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})  # chunked: no length
        await response.prepare(request)
        chunk = b"\x89PNG" + b"\0" * (64 * 1024 - 4)
        try:
            while served.sent < HUGE:
                await response.write(chunk)
                served.sent += len(chunk)
        except (ConnectionResetError, RuntimeError):
            return response  # the client hung up: what it read is in served.sent
        await response.write_eof()
        return response

    async def _to(self, request: web.Request) -> web.Response:
        self.served.append(Served(request.path_qs, 0))
        raise web.HTTPFound(request.query["url"])

    async def _loop(self, request: web.Request) -> web.Response:
        self.served.append(Served(request.path, 0))
        raise web.HTTPFound("/loop")
