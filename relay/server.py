"""The relay's HTTP face: the API posts webhooks in, bots read them out as Server-Sent Events.

Routes:

- ``POST /webhooks/doitong/{channel}`` (and ``POST /webhooks/doitong`` when the relay serves
  exactly one channel): the API's ``webhookUrl``. The raw body and ``X-Doitong-Signature`` are
  stored unchanged, so the bot verifies the signature end to end; the answer (200) comes only
  after the event is committed to disk.
- ``GET /events`` with ``Authorization: Bearer <token>``: the token's channel as a stream of
  events, resumed after ``Last-Event-ID`` (or ``?after=``). Each event is
  ``id: <n>`` + ``data: {"body": <raw body>, "signature": <header>, "received_at": <unix time>}``.
- ``POST /events/ack`` ``{"up_to": n}`` with the same token: events up to ``n`` are dropped.
- ``GET /healthz``.

Why Server-Sent Events rather than a websocket: the flow is one-way (relay to bot; the few
acknowledgements are plain POSTs), SSE is ordinary HTTP that passes any proxy or load balancer,
resuming after ``Last-Event-ID`` is part of the protocol, and aiohttp serves it with a
``StreamResponse`` on both ends: no websocket library, no framing, no ping/pong of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from relay.config import RelayConfig
from relay.store import EventStore, StoredEvent
from shared import contract
from shared.webhooks import WEBHOOK_PATH, read_capped, verify_signature

log = logging.getLogger(__name__)

EVENTS_PATH = "/events"
ACK_PATH = "/events/ack"
RETRY_MS = 2000  # the SSE ``retry:`` hint: how soon a subscriber should reconnect
UNAUTHORIZED = {"error": "missing or unknown token"}  # the same words for every refused token


class TokenBucket:
    """Per-key token buckets: ``per_minute`` refills a minute, a burst of a minute's worth."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._state: dict[str, tuple[float, float]] = {}  # key -> tokens, when counted

    def take(self, key: str, now: float | None = None) -> float:
        """0 when a token was taken; else the seconds until one will be there."""
        now = time.monotonic() if now is None else now
        tokens, then = self._state.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


@dataclass(eq=False)
class _Subscriber:
    channel: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    replaced: bool = False


class RelayServer:
    def __init__(self, config: RelayConfig) -> None:
        config.validate()
        self.config = config
        self._tokens = [(token.encode(), channel) for token, channel in config.tokens.items()]
        self._channels = set(config.tokens.values())
        self._secrets = {channel: secret.encode() for channel, secret in config.secrets.items()}
        self._limiter = TokenBucket(config.rate_per_minute)
        self._subscribers: dict[str, _Subscriber] = {}  # one live stream per channel: the newest
        self._closing = False
        self.store: EventStore | None = None
        self.app = web.Application(client_max_size=config.max_body)
        self.app.router.add_post(WEBHOOK_PATH + "/{channel}", self._post)
        self.app.router.add_post(WEBHOOK_PATH, self._post)
        self.app.router.add_get(EVENTS_PATH, self._events)
        self.app.router.add_post(ACK_PATH, self._ack)
        self.app.router.add_get("/healthz", self._healthz)
        self._runner: web.AppRunner | None = None
        self._purger: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.stored = 0
        self.refused = 0

    # --- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._closing = False
        self.store = await EventStore.open(self.config.db_path)
        self.store.on_stored = self._wake
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            await self.store.close()
            raise
        sockets = getattr(site._server, "sockets", None) or []  # the bound port lives only here
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        self._purger = asyncio.create_task(self._purge_loop(), name="relay-purge")
        log.info(
            "relay listening on %s:%s for %d channel(s): %s",
            self.config.host,
            self.port,
            len(self._channels),
            ", ".join(sorted(self._channels)),
        )

    async def stop(self) -> None:
        self._closing = True
        for sub in self._subscribers.values():
            sub.wake.set()  # streams end on their own; cleanup then has nothing to wait for
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def subscribed(self, channel: str) -> bool:
        """Whether a bot is reading this channel's stream now."""
        return channel in self._subscribers

    def _store(self) -> EventStore:
        if self.store is None:
            raise web.HTTPServiceUnavailable(text="relay is starting or stopping")
        return self.store

    def _wake(self, channels: Iterable[str]) -> None:
        for channel in channels:
            sub = self._subscribers.get(channel)
            if sub is not None:
                sub.wake.set()

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval)
            try:
                dropped = await self._store().purge(time.time() - self.config.retention_seconds)
            except Exception:
                log.exception("relay: expiry sweep failed")
                continue
            if dropped:
                log.warning(
                    "relay: %d unacknowledged event(s) expired after %.0f days",
                    dropped,
                    self.config.retention_seconds / 86_400,
                )

    # --- the API's side ------------------------------------------------------------------------

    async def _post(self, request: web.Request) -> web.Response:
        channel = request.match_info.get("channel")
        if channel is None and len(self._channels) == 1:
            (channel,) = self._channels  # one bot: the plain path works too
        if channel is None or channel not in self._channels:
            # Channel names are not secrets (they are in the webhookUrl); tokens are.
            return self._refuse(404, "no such channel")
        body = await read_capped(request, self.config.max_body)
        if body is None:
            return self._refuse(413, "body too large")
        signature = request.headers.get(contract.SIGNATURE_HEADER)
        if not signature or not signature.startswith(contract.SIGNATURE_PREFIX):
            return self._refuse(401, "missing signature")  # the bot could never accept it
        secret = self._secrets.get(channel)
        if secret is not None and not verify_signature(secret, body, signature):
            return self._refuse(401, "wrong signature")  # dropped early; the bot checks again anyway
        try:
            event = json.loads(body.decode("utf-8"))  # UTF-8 only: the stream carries it as text
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return self._refuse(400, "not a JSON object")
        store = self._store()
        if store.holding(channel) >= self.config.max_held:
            log.warning("relay: channel %s holds %d events; refusing more", channel, store.holding(channel))
            return self._refuse(503, "channel full: its subscriber is not reading", retry_after=60)
        wait = self._limiter.take(channel)
        if wait > 0:
            return self._refuse(429, "rate limited", retry_after=max(1, math.ceil(wait)))
        appended = await store.append(channel, body, signature)
        if appended.duplicate:  # the API retried an event we hold: it is answered, not stored
            log.info("relay: event %s/%d posted again; kept once", channel, appended.id)
            return web.json_response({"ok": True, "id": appended.id, "duplicate": True})
        self.stored += 1
        log.debug("relay: stored event %s/%d (%d bytes)", channel, appended.id, len(body))
        return web.json_response({"ok": True, "id": appended.id})

    def _refuse(self, status: int, reason: str, *, retry_after: int | None = None) -> web.Response:
        self.refused += 1
        log.info("relay: post refused (%d): %s", status, reason)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response({"error": reason}, status=status, headers=headers)

    # --- the subscribers' side -----------------------------------------------------------------

    def _channel_of(self, request: web.Request) -> str:
        """The bearer token's channel; 401 otherwise, worded the same for every failure."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        found: str | None = None
        if scheme.lower() == "bearer" and token.strip():
            given = token.strip().encode()
            for known, channel in self._tokens:  # compare with every token: timing says nothing
                if hmac.compare_digest(known, given):
                    found = channel
        if found is None:
            raise web.HTTPUnauthorized(
                text=json.dumps(UNAUTHORIZED),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="relay"'},
            )
        return found

    @staticmethod
    def _position(request: web.Request) -> int:
        raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
        try:
            after = int(raw.strip())
        except ValueError:
            after = -1
        if after < 0:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "Last-Event-ID / after must be a whole number >= 0"}),
                content_type="application/json",
            )
        return after

    async def _events(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel_of(request)
        after = self._position(request)
        store = self._store()
        if after > store.last_id(channel):
            # Beyond any id this relay gave: its database was replaced. Start over; the bot's
            # exactly-once completion path makes a repeat harmless, a gap would not be.
            log.warning("relay: %s resumed after %d > last id %d; from the start", channel, after,
                        store.last_id(channel))  # fmt: skip
            after = 0
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        await response.prepare(request)
        sub = _Subscriber(channel)
        old = self._subscribers.get(channel)
        if old is not None:  # the bot restarted and its old connection is not dead yet: newest wins
            old.replaced = True
            old.wake.set()
        self._subscribers[channel] = sub
        log.info("relay: subscriber for %s connected, resuming after %d", channel, after)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            while not self._closing and not sub.replaced:
                sub.wake.clear()  # before reading: a commit landing now wakes the next wait
                events = await store.after(channel, after, self.config.batch)
                if events:
                    await response.write(b"".join(_frame(e) for e in events))
                    after = events[-1].id
                    continue
                try:
                    async with asyncio.timeout(self.config.heartbeat_seconds):  # not wait_for: see Poller.run
                        await sub.wake.wait()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")  # also finds a dead connection
        except (ConnectionError, OSError):
            pass  # the subscriber went away; what it did not acknowledge stays stored
        finally:
            if self._subscribers.get(channel) is sub:
                del self._subscribers[channel]
            log.info("relay: subscriber for %s gone (last sent %d)", channel, after)
        return response

    async def _ack(self, request: web.Request) -> web.Response:
        channel = self._channel_of(request)
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        up_to = payload.get("up_to") if isinstance(payload, dict) else None
        if not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 0:
            return web.json_response({"error": 'send {"up_to": <event id>}'}, status=400)
        store = self._store()
        if up_to > store.last_id(channel):
            # Never drop what the subscriber has not seen (a relay with a new database, a bug).
            return web.json_response({"error": "up_to is beyond the last event"}, status=400)
        dropped = await store.ack(channel, up_to)
        return web.json_response({"ok": True, "dropped": dropped, "held": store.holding(channel)})

    async def _healthz(self, request: web.Request) -> web.Response:
        # Counts only: no channel names, so nothing here tells a stranger which channels exist.
        held = sum(self.store.holding(c) for c in self._channels) if self.store else 0
        return web.json_response(
            {"ok": self.store is not None, "subscribers": len(self._subscribers), "held": held}
        )


def _frame(event: StoredEvent) -> bytes:
    """One SSE event. The body was checked to be UTF-8 JSON on the way in, so it travels as text
    and the subscriber gets the very same bytes back with ``.encode()``."""
    data = json.dumps(
        {"body": event.body.decode("utf-8"), "signature": event.signature, "received_at": event.received_at},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"id: {event.id}\ndata: {data}\n\n".encode()
