"""The bot's webhook receiver: signed completion events from the API, checked, then reported.

The signature check and the capped body read are :mod:`shared.webhooks` (the relay uses them too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.api.client import ApiJob
from bot.metrics import CONTENT_TYPE
from shared import contract
from shared.webhooks import WEBHOOK_PATH, read_capped, verify_signature

log = logging.getLogger(__name__)


MAX_BODY_BYTES = 64 * 1024  # a completion event is a few hundred bytes
Report = Callable[[ApiJob], Awaitable[bool]]  # False: unknown job, ask the sender to retry
Health = Callable[[], dict[str, object]]  # more fields for GET /healthz
MetricsPage = Callable[[], Awaitable[bytes]]  # the exposition text for GET /metrics


def parse_event(body: bytes) -> ApiJob:
    """The job an event reports; ValueError when it is not one."""
    try:
        event = json.loads(body)
        # Text that cannot be stored (a lone surrogate such as "\ud800") is not an event either.
        json.dumps(event, ensure_ascii=False).encode()
    except RecursionError:  # deeply nested JSON: not a ValueError by itself
        raise ValueError("nested too deeply") from None
    except UnicodeEncodeError as exc:
        raise ValueError("text that is not valid Unicode") from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("status"), str)
    ):
        raise ValueError("not a job event")
    metadata = event.get("metadata")
    cost = event.get("creditCost")
    return ApiJob(
        id=event["id"],
        status=event["status"],
        url=event.get("url") if isinstance(event.get("url"), str) else None,
        metadata=metadata if isinstance(metadata, dict) else None,
        credit_cost=cost if isinstance(cost, int) and not isinstance(cost, bool) else None,
        created_at=event.get("createdAt") if isinstance(event.get("createdAt"), str) else None,
        completed_at=event.get("completedAt") if isinstance(event.get("completedAt"), str) else None,
        error=event.get("error") if isinstance(event.get("error"), str) else None,
    )


class WebhookReceiver:
    """aiohttp server for ``POST /webhooks/doitong``, ``GET /healthz`` and ``GET /metrics``.

    The signature is checked over the raw bytes before anything is parsed; a missing or wrong
    signature is 401, an oversized body 413, a malformed one 400, and none of them reaches
    ``report``. A verified event goes to ``report`` (the exactly-once completion path), so a
    redelivery is answered 200 and changes nothing.
    """

    def __init__(
        self,
        secret: bytes | None,
        report: Report,
        *,
        health: Health | None = None,
        metrics: MetricsPage | None = None,
    ) -> None:
        self.secret = secret
        self.report = report
        self.health = health or (lambda: {})
        self.metrics = metrics
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post(WEBHOOK_PATH, self._webhook)
        self.app.router.add_get("/healthz", self._healthz)
        if metrics is not None:
            self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.accepted = 0
        self.rejected = 0

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("webhook receiver listening on %s:%s%s", host, self.port, WEBHOOK_PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            return self._refuse(413, "body too large")
        # Without a configured secret nothing can be verified, so nothing is accepted (an empty
        # HMAC key would let anyone sign).
        signature = request.headers.get(contract.SIGNATURE_HEADER)
        if not self.secret or not verify_signature(self.secret, body, signature):
            return self._refuse(401, "missing or wrong signature")
        try:
            event = parse_event(body)
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            return self._refuse(400, "not a job event")
        self.accepted += 1
        if not await self.report(event):
            return web.json_response({"error": "unknown job, retry later"}, status=503)
        return web.json_response({"ok": True})

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.rejected += 1
        log.warning("webhook refused (%d): %s", status, reason)
        return web.json_response({"error": reason}, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        assert self.metrics is not None
        return web.Response(body=await self.metrics(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, **self.health()})
