"""A webhook from the API on the wire: its signature and its size cap.

``X-Doitong-Signature: sha256=<hex>`` is the HMAC-SHA256 of the raw body keyed with the
account's webhook secret: the scheme of GitHub's ``X-Hub-Signature-256``. The bot's receiver,
its relay subscriber and the relay all check it with this one function.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from shared import contract

# Where the bot's receiver and the relay take the API's posts (the relay adds /{channel}).
WEBHOOK_PATH = "/webhooks/doitong"


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of exactly ``body``; compared in constant time."""
    if not header or not header.startswith(contract.SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    given = header[len(contract.SIGNATURE_PREFIX) :].strip().lower()
    # compare_digest on ASCII bytes: a non-ASCII header must fail, not raise.
    return hmac.compare_digest(expected.encode(), given.encode("ascii", "replace"))


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over ``limit`` (declared or actual): answer 413."""
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # no Content-Length: the app's client_max_size caught it
        return None
    return body if len(body) <= limit else None
