"""Members' image links: fetched from public addresses only, capped while streaming.

The "public" host is testkit.web on 127.0.0.2, allowed the way an operator allows a network of
their own; every other loopback, private or link-local address stays refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from bot.media.fetch import FetchError, TooLarge
from bot.media.link import LinkFetcher, LinkRefused, is_public
from shared import contract
from testkit.web import ALLOW, PublicWeb

PRIVATE = "the link points to a private or local address"


@pytest.fixture
async def web() -> AsyncIterator[PublicWeb]:
    async with PublicWeb() as server:
        yield server


@pytest.fixture
async def links() -> AsyncIterator[LinkFetcher]:
    fetcher = LinkFetcher([ipaddress.ip_network(ALLOW)])
    yield fetcher
    await fetcher.close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True), ("2606:4700::1", True), ("127.0.0.1", False), ("10.1.2.3", False),
        ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
        ("0.0.0.0", False), ("224.0.0.1", False), ("::1", False), ("fd00::1", False), ("fe80::1", False),
        ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True),
    ],
)  # fmt: skip
def test_which_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_a_public_picture_is_fetched(web: PublicWeb, links: LinkFetcher) -> None:
    data, declared = await links.fetch(web.url("/cat.png"), max_bytes=contract.MAX_IMAGE_BYTES)
    assert data == web.picture and declared == "image/png"


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("http://127.0.0.1/cat.png", PRIVATE),
        ("http://169.254.169.254/latest/meta-data/", PRIVATE),
        ("http://[::1]/x.png", PRIVATE),
        ("http://10.0.0.8/x.png", PRIVATE),
        ("http://2130706433/x.png", "not a link the bot can fetch"),  # 127.0.0.1 written as a number
        ("http://localhost/x.png", PRIVATE),  # a name that resolves to loopback
        ("ftp://example.com/x.png", "only http:// and https:// links"),
        ("file:///etc/passwd", "only http:// and https:// links"),
        ("http://user:secret@example.com/x.png", "user name or password"),
    ],
)
async def test_links_into_the_hosts_network_are_refused_before_any_request(
    links: LinkFetcher, link: str, why: str
) -> None:
    with pytest.raises(LinkRefused, match=why):
        await links.fetch(link, max_bytes=contract.MAX_IMAGE_BYTES)


async def test_a_redirect_to_a_private_address_is_refused(web: PublicWeb, links: LinkFetcher) -> None:
    for target in ("http://127.0.0.1:9/x.png", "http://169.254.169.254/", "http://localhost:9/x.png"):
        with pytest.raises(LinkRefused, match=PRIVATE):
            await links.fetch(web.url(f"/to?url={target}"), max_bytes=contract.MAX_IMAGE_BYTES)
    # followed when the target is public
    data, _ = await links.fetch(web.url(f"/to?url={web.url('/cat.png')}"), max_bytes=contract.MAX_IMAGE_BYTES)
    assert data == web.picture


async def test_endless_redirects_are_refused(web: PublicWeb, links: LinkFetcher) -> None:
    with pytest.raises(LinkRefused, match="redirects more than 5 times"):
        await links.fetch(web.url("/loop"), max_bytes=contract.MAX_IMAGE_BYTES)
    assert len([s for s in web.served if s.path == "/loop"]) == 6


async def test_a_huge_stream_is_cut_at_the_cap(web: PublicWeb, links: LinkFetcher) -> None:
    with pytest.raises(TooLarge):
        await links.fetch(web.url("/huge.png"), max_bytes=contract.MAX_IMAGE_BYTES)
    (huge,) = [s for s in web.served if s.path == "/huge.png"]
    assert huge.sent < 20 * 1024 * 1024  # the bot hung up near its 10 MiB cap, not at 50 MB


async def test_a_missing_file_says_what_the_server_answered(web: PublicWeb, links: LinkFetcher) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        await links.fetch(web.url("/nothing.png"), max_bytes=contract.MAX_IMAGE_BYTES)
