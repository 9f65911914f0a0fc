"""Signed webhook deliveries with retries.

The body is serialised once; every attempt sends the same bytes, the same
``X-Doitong-Signature`` (``sha256=`` + lowercase hex HMAC-SHA256 of those bytes, keyed with the
account's webhook secret) and the same ``X-Doitong-Delivery`` event id. A non-2xx answer or a
connection error is retried after 1, 2, 4, 8, ... seconds (times ``time_scale``) until
``attempts`` attempts were made.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from shared import contract

DELIVERY_HEADER = "X-Doitong-Delivery"
ATTEMPT_HEADER = "X-Doitong-Attempt"  # emulator's own, informative
USER_AGENT = "Doitong-Webhooks/emulator"

log = logging.getLogger(__name__)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return contract.SIGNATURE_PREFIX + digest


def encode_payload(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class WebhookStats:
    sent: int = 0  # POST attempts made
    failed_attempts: int = 0  # attempts answered non-2xx or not answered
    dropped: int = 0  # events never sent (drop_webhook fault)
    delivered: int = 0  # events acknowledged with a 2xx
    exhausted: int = 0  # events given up after every attempt failed

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed_attempts": self.failed_attempts,
            "dropped": self.dropped,
            "delivered": self.delivered,
            "exhausted": self.exhausted,
        }


class WebhookSender:
    def __init__(
        self, session: aiohttp.ClientSession, *, attempts: int, time_scale: float, timeout: float
    ) -> None:
        self._session = session
        self._attempts = attempts
        self._time_scale = time_scale
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.stats = WebhookStats()

    async def deliver(self, url: str, payload: dict[str, Any], secret: str, event_id: str) -> bool:
        """Deliver one event; True once a receiver answered 2xx."""
        body = encode_payload(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            contract.SIGNATURE_HEADER: sign(secret, body),
            DELIVERY_HEADER: event_id,
        }
        for attempt in range(1, self._attempts + 1):
            self.stats.sent += 1
            headers[ATTEMPT_HEADER] = str(attempt)
            try:
                async with self._session.post(url, data=body, headers=headers, timeout=self._timeout) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self.stats.delivered += 1
                        return True
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = type(exc).__name__
            self.stats.failed_attempts += 1
            log.info("webhook %s attempt %d/%d failed: %s", event_id, attempt, self._attempts, reason)
            if attempt < self._attempts:
                await asyncio.sleep((2 ** (attempt - 1)) * self._time_scale)
        self.stats.exhausted += 1
        log.warning("webhook %s given up after %d attempts", event_id, self._attempts)
        return False
