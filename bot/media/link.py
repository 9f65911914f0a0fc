"""A picture from a link a member gave (``/animate image_url:``), fetched from public addresses only.

The link is the member's, so the bot must not become their way into its host's network:

- only ``http`` and ``https``, on any port, without user names or passwords in the link;
- every address the host name resolves to, and each redirect's (at most five), must be public:
  not loopback, private, link-local (which holds the cloud metadata service, 169.254.169.254),
  shared, multicast, reserved or unspecified, in IPv4 or IPv6 (IPv4-mapped IPv6 included),
  unless the operator allowed that network (``IMAGE_URL_ALLOWED_NETWORKS``, for an image host
  of their own);
- the body is cut at the API's image limit while it streams, whatever the headers say, and is
  decoded by Pillow like any upload (:func:`bot.media.image.validate_image`): an HTML page
  served as ``image/png`` is refused there.

Why aiohttp and not the bot's httpx client: the check must sit where the connection is made, so
the address checked is the address connected to (a name that answers a public address to the
check and a private one to the connect, DNS rebinding, gets nowhere). aiohttp takes a resolver
(:class:`PublicResolver`); httpx 0.28 does not expose its network backend. aiohttp never asks
the resolver about a host written as an IP address, so those are checked before each request.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bot.i18n import say
from bot.media.fetch import FetchError, TooLarge

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS: Final = 5
TIMEOUT: Final = aiohttp.ClientTimeout(total=30, sock_connect=10)
SCHEMES: Final = ("http", "https")


class LinkRefused(FetchError):
    """The link may not be fetched; the message says why, for the member."""


def is_public(address: Address, allowed: Sequence[Network] = ()) -> bool:
    """Whether the bot may connect to ``address`` on a member's behalf."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in network for network in allowed):
        return True
    # is_global is False for every special-purpose block IANA lists (loopback, RFC 1918,
    # link-local, 100.64/10, documentation, benchmarking, unique local, ...); multicast is
    # "global" to ipaddress, so it is named apart.
    return address.is_global and not address.is_multicast


class PublicResolver(AbstractResolver):
    """Resolves as usual, then keeps the public addresses only; none left is a refusal."""

    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self._resolver = DefaultResolver()
        self._allowed = tuple(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            found = await self._resolver.resolve(host, port, family)
        except OSError:
            raise LinkRefused(say("the host %(host)s could not be found", host=repr(host))) from None
        public = [r for r in found if is_public(ipaddress.ip_address(r["host"]), self._allowed)]
        if not public:
            raise LinkRefused(say("the link points to a private or local address; give a public link"))
        return public

    async def close(self) -> None:
        await self._resolver.close()


def _check_url(url: URL, allowed: Sequence[Network]) -> None:
    if url.scheme not in SCHEMES:
        raise LinkRefused(say("only http:// and https:// links are accepted"))
    if not url.host:
        raise LinkRefused(say("the link has no host"))
    if url.user is not None or url.password is not None:
        raise LinkRefused(say("links with a user name or password are not accepted"))
    try:
        literal = ipaddress.ip_address(url.host)
    except ValueError:
        return  # a name: PublicResolver checks what it resolves to
    if not is_public(literal, allowed):
        raise LinkRefused(say("the link points to a private or local address; give a public link"))


class LinkFetcher:
    """Fetches members' links; one per process (it holds a connection pool)."""

    def __init__(self, allowed: Iterable[Network] = ()) -> None:
        self._allowed = tuple(allowed)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: inside the running loop
            connector = aiohttp.TCPConnector(resolver=PublicResolver(self._allowed), limit=16)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=TIMEOUT, headers={"User-Agent": "animate-bot (image link)"}
            )
        return self._session

    async def fetch(self, link: str, *, max_bytes: int) -> tuple[bytes, str | None]:
        """The body at ``link`` and its declared content type, or :class:`FetchError` (a
        :class:`LinkRefused` for a link the rules above forbid)."""
        try:
            url = URL(link.strip())
        except ValueError:
            raise LinkRefused(say("that is not a link")) from None
        session = self._open()
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url, self._allowed)
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(
                                say(
                                    "the server answered HTTP %(status)s with nowhere to go",
                                    status=str(response.status),
                                )
                            )
                        url = url.join(URL(location))
                        continue
                    if response.status != 200:
                        raise FetchError(
                            say("the server answered HTTP %(status)s", status=str(response.status))
                        )
                    return await _read_capped(response, max_bytes), response.headers.get("Content-Type")
            except LinkRefused:
                raise
            except aiohttp.InvalidURL:
                raise LinkRefused(say("that is not a link the bot can fetch")) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, LinkRefused) else None
                if cause is not None:  # aiohttp wraps what the resolver raised
                    raise cause from None
                raise FetchError(say("the download failed (%(error)s)", error=type(exc).__name__)) from None
        raise LinkRefused(say("the link redirects more than %(count)s times", count=MAX_REDIRECTS))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise TooLarge(max_bytes)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
