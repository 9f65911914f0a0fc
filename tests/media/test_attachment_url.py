"""Discord's signed attachment URLs: when they stop working."""

from __future__ import annotations

from bot.media.attachment_url import data_uri, expired, expires_at

DAY = 24 * 3600
ISSUED = 1_790_000_000
URL = f"https://cdn.discordapp.com/attachments/1/2/pic.png?ex={ISSUED + DAY:x}&is={ISSUED:x}&hm=abc&"


def test_the_end_is_read_from_the_ex_parameter() -> None:
    assert expires_at(URL) == ISSUED + DAY
    assert expires_at("https://example.com/pic.png") is None
    assert expires_at("https://cdn.discordapp.com/a.png?ex=zz") is None


def test_a_url_counts_as_expired_shortly_before_its_end() -> None:
    assert not expired(URL, ISSUED + 60)
    assert not expired(URL, ISSUED + DAY - 121)
    assert expired(URL, ISSUED + DAY - 119)  # the API would fetch it too late
    assert expired(URL, ISSUED + DAY + 1)
    assert not expired("https://example.com/pic.png", ISSUED + 10 * DAY)  # unsigned: never


def test_a_short_lived_url_gets_a_tenth_of_its_life_as_margin() -> None:
    short = f"https://cdn.test/attachments/1/2/p.png?ex={ISSUED + 10:x}&is={ISSUED:x}&hm=x&"
    assert not expired(short, ISSUED + 8.9)
    assert expired(short, ISSUED + 9.1)


def test_a_data_uri_carries_the_bytes() -> None:
    assert data_uri(b"\x89PNG", "image/png") == "data:image/png;base64,iVBORw=="
