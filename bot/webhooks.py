"""Webhooks from the API: signature verification (and, with the bot, the receiver).

``X-Doitong-Signature: sha256=<hex>`` is the HMAC-SHA256 of the raw body keyed with the
account's webhook secret: the scheme of GitHub's ``X-Hub-Signature-256``.
"""

from __future__ import annotations

import hashlib
import hmac

from bot import contract


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of exactly ``body``; compared in constant time."""
    if not header or not header.startswith(contract.SIGNATURE_PREFIX):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    given = header[len(contract.SIGNATURE_PREFIX) :].strip().lower()
    # compare_digest on ASCII bytes: a non-ASCII header must fail, not raise.
    return hmac.compare_digest(expected.encode(), given.encode("ascii", "replace"))
