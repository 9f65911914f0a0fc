"""Fetch a file over HTTP without trusting its size: stop reading past a cap."""

from __future__ import annotations

import anyio
import httpx

from bot.i18n import TextError, say


class FetchError(TextError):
    """The file could not be fetched; the message says why (never the URL's query string)."""


class TooLarge(FetchError):
    def __init__(self, limit: int) -> None:
        super().__init__(say("the file is larger than %(limit)s bytes", limit=limit))
        self.limit = limit


def load_async_backend() -> None:
    """Load what httpx's first request loads, once, at start (call it on the running loop).

    httpcore's connection pool makes an anyio ``Event`` for its first request, and anyio imports
    its asyncio backend then: ~18 ms of imports (measured), which landed in the first burst's
    acknowledgements with its first picture download.
    """
    anyio.Event()


async def fetch_bytes(http: httpx.AsyncClient, url: str, *, max_bytes: int) -> bytes:
    """GET ``url`` and return its body, refusing anything over ``max_bytes``.

    Content-Length is checked first when the server sends one, and the stream is cut at the cap
    either way, so a lying or absent header cannot make us hold more than ``max_bytes``.
    """
    try:
        async with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(say("the server answered HTTP %(status)s", status=str(response.status_code)))
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(max_bytes)
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(max_bytes)
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise FetchError(say("the download failed (%(error)s)", error=type(exc).__name__)) from None
