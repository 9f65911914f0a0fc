"""Discord's signed attachment URLs: when one stops working, and the stand-in for it then.

Discord signs CDN attachment URLs (``?ex=<hex Unix time>&is=…&hm=…``); past ``ex`` they answer
404, about a day after they were issued. A job that waited in the queue that long, or an
Animate again on an old card, uses the picture kept in the store instead (bot.store.pictures),
sent to the API as a ``data:`` URI, which the API takes like any image URL.
"""

from __future__ import annotations

import base64
from typing import Final
from urllib.parse import parse_qs, urlsplit

# A URL this close to its end is not handed to the API, which fetches it a moment later: two
# minutes, or a tenth of the URL's life when that is shorter (test worlds issue short ones).
MARGIN: Final = 120.0
MARGIN_SHARE: Final = 0.1


def _hex_time(url: str, name: str) -> float | None:
    values = parse_qs(urlsplit(url).query).get(name)
    if not values:
        return None
    try:
        return float(int(values[0], 16))
    except ValueError:
        return None


def expires_at(url: str) -> float | None:
    """When ``url`` stops working (Unix time), or None if it does not say (not a signed URL)."""
    return _hex_time(url, "ex")


def expired(url: str, now: float) -> bool:
    """Whether ``url`` has stopped working, or will before the API could fetch it."""
    end = expires_at(url)
    if end is None:
        return False
    issued = _hex_time(url, "is")
    margin = MARGIN if issued is None else min(MARGIN, (end - issued) * MARGIN_SHARE)
    return end - margin <= now


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
