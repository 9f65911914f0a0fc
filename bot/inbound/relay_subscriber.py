"""The bot's side of the webhook relay: connect OUT, read Server-Sent Events, report, acknowledge.

A bot with no public address sets ``RELAY_URL`` and ``RELAY_TOKEN``. Every event the relay
holds for its channel goes through the same checks as the in-process receiver: the signature
over the raw body with the bot's own ``DOITONG_WEBHOOK_SECRET`` (the relay is not trusted),
then ``parse_event``, then the exactly-once completion path (``Pipeline.report``).

- A forged or malformed event is logged, counted and acknowledged (dropped): nothing changes.
- An event for a job the bot does not know yet (the webhook outran the create's answer) is
  retried for ``unknown_retry_for`` seconds, then acknowledged and left to the poller.
- Events are handled one at a time, in the relay's order, and acknowledged afterwards
  (cumulatively, in batches). A crash before the acknowledgement means a repeat, never a loss;
  the completion path makes the repeat a no-op.
- After a disconnect it reconnects with exponential backoff and jitter, resuming after the last
  event it handled (``Last-Event-ID``). ``on_change`` hears when the stream is up or down, so the
  poller can poll at its normal pace while no webhook can arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp

from bot.inbound.receiver import Report, parse_event
from shared.webhooks import verify_signature

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024  # an event's data line; the relay caps bodies far below this
STABLE_SECONDS = 10.0  # a stream up this long counts as healthy: the next reconnect is quick


@dataclass(frozen=True, slots=True)
class SseEvent:
    id: str | None
    event: str
    data: str
    retry: int | None = None


class SseParser:
    """The text/event-stream format (WHATWG HTML, "server-sent events"): lines end in LF, CRLF or
    CR; ``field: value``; a blank line dispatches; lines starting with ':' are comments."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._cr = False  # the last chunk ended in CR: a LF starting the next one belongs to it

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        self._buffer += chunk
        lines = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LINE:
            raise ValueError("event stream line too long")
        events: list[SseEvent] = []
        for raw in lines:
            event = self._line(raw.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event, self._retry = "", None
                return None
            event = SseEvent(self._id, self._event or "message", "\n".join(self._data), self._retry)
            self._data, self._event, self._retry = [], "", None
            return event
        if line.startswith(":"):
            return None  # a comment: the relay's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


class RelayRefused(Exception):
    """The relay answered the subscription with something other than a stream."""


class RelaySubscriber:
    def __init__(
        self,
        url: str,
        token: str,
        secret: bytes,
        report: Report,
        *,
        on_change: Callable[[bool], None] | None = None,
        unknown_retry_for: float = 30.0,
        read_timeout: float = 60.0,  # no byte for this long (the relay beats every 15 s): reconnect
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        ack_delay: float = 0.05,  # gather the acknowledgements of a burst into one request
    ) -> None:
        if not secret:
            raise ValueError("a relay subscriber needs the webhook secret: it verifies every event")
        self.url = url.rstrip("/")
        self._token = token
        self.secret = secret
        self.report = report
        self.on_change = on_change or (lambda connected: None)
        self.unknown_retry_for = unknown_retry_for
        self.read_timeout = read_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.ack_delay = ack_delay
        self.connected = False
        self.last_id: int | None = None  # the last event handled: where a reconnect resumes
        self.acked_id: int | None = None
        self.delivered = 0  # events that reached the completion path
        self.rejected = 0  # forged or malformed: dropped
        self.given_up = 0  # unknown jobs left to the poller
        self.connects = 0
        self._ack_wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._up_since: float | None = None

    def __repr__(self) -> str:  # never the token
        return f"RelaySubscriber(url={self.url!r}, connected={self.connected}, last_id={self.last_id})"

    # --- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"})
        self._task = asyncio.create_task(self.run(), name="relay-subscriber")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            with contextlib.suppress(Exception):  # best effort: a repeat is harmless anyway
                await asyncio.wait_for(self._send_ack(), timeout=2.0)
            await self._session.close()
            self._session = None
        self._set_connected(False)

    async def run(self) -> None:
        failures = 0
        while True:
            self._up_since = None
            try:
                await self._subscribe_once()
                reason = "stream ended"
            except RelayRefused as exc:
                reason = str(exc)
                if "401" in reason:
                    log.error("the relay refused RELAY_TOKEN (401); check it. Retrying.")
                    failures = max(failures, 7)  # wait long: an operator must act
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            # A stream that stayed up a while was healthy: start the backoff over. One dropped at
            # once (a second bot on the same token, a proxy cutting it) backs off like a failure.
            up = self._up_since is not None and time.monotonic() - self._up_since >= STABLE_SECONDS
            failures = 1 if up else failures + 1
            self._set_connected(False)
            delay = min(self.backoff_max, self.backoff_min * 2 ** (failures - 1))
            delay = random.uniform(delay / 2, delay)  # jitter: many bots do not come back at once
            log.warning("relay stream down (%s); reconnecting in %.1fs", reason, delay)
            await asyncio.sleep(delay)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            try:
                self.on_change(connected)
            except Exception:
                log.exception("relay connection hook failed")

    # --- the stream --------------------------------------------------------------------------

    async def _subscribe_once(self) -> None:
        assert self._session is not None
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = str(self.last_id)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=self.read_timeout)
        async with self._session.get(self.url + "/events", headers=headers, timeout=timeout) as resp:
            if resp.status != 200 or not resp.content_type.startswith("text/event-stream"):
                await resp.read()
                raise RelayRefused(f"HTTP {resp.status} {resp.content_type}")
            self.connects += 1
            self._up_since = time.monotonic()
            log.info("relay stream up (resuming after %s)", self.last_id if self.last_id is not None else "-")
            self._set_connected(True)
            acker = asyncio.create_task(self._ack_loop(), name="relay-ack")
            if self.last_id is not None and self.acked_id != self.last_id:
                self._ack_wanted.set()  # handled before the drop, not acknowledged yet
            try:
                async for event in self._events(resp):
                    await self._handle(event)
            finally:
                acker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acker

    @staticmethod
    async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
        parser = SseParser()
        async for chunk in resp.content.iter_any():
            for event in parser.feed(chunk):
                yield event

    async def _handle(self, event: SseEvent) -> None:
        if event.event != "message" or event.id is None:
            return  # not ours to handle (a future kind of event); nothing to acknowledge
        try:
            event_id = int(event.id)
        except ValueError:
            log.warning("relay event with a non-numeric id; ignored")
            return
        await self._process(event_id, event.data)
        self.last_id = event_id
        self._ack_wanted.set()

    async def _process(self, event_id: int, data: str) -> None:
        try:
            envelope = json.loads(data)
            body = envelope["body"].encode("utf-8")
            signature = envelope.get("signature")
            if signature is not None and not isinstance(signature, str):
                raise TypeError("signature")
        except (ValueError, KeyError, TypeError, AttributeError):
            self._reject(event_id, "malformed relay event")
            return
        if not verify_signature(self.secret, body, signature):
            self._reject(event_id, "missing or wrong signature")
            return
        try:
            api_job = parse_event(body)
        except ValueError:
            self._reject(event_id, "signed, but not a job event")
            return
        deadline = time.monotonic() + self.unknown_retry_for
        pause = 0.2
        while True:
            try:
                known = await self.report(api_job)
            except Exception:
                log.exception("relay event %d (api job %s): completion failed", event_id, api_job.id)
                known = False
            if known:
                self.delivered += 1
                return
            if time.monotonic() >= deadline:
                self.given_up += 1
                log.warning(
                    "relay event %d: api job %s still unknown after %.0fs; left to the poller",
                    event_id,
                    api_job.id,
                    self.unknown_retry_for,
                )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    def _reject(self, event_id: int, reason: str) -> None:
        self.rejected += 1
        log.warning("relay event %d dropped: %s", event_id, reason)

    # --- acknowledgements --------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wanted.wait()
            await asyncio.sleep(self.ack_delay)
            self._ack_wanted.clear()
            try:
                await self._send_ack()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("relay acknowledgement failed (%s); will send it again", type(exc).__name__)
                await asyncio.sleep(1.0)
                self._ack_wanted.set()

    async def _send_ack(self) -> None:
        up_to = self.last_id
        if up_to is None or up_to == self.acked_id or self._session is None:
            return
        async with self._session.post(
            self.url + "/events/ack", json={"up_to": up_to}, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            await resp.read()
            if resp.status == 200:
                self.acked_id = up_to
            elif 400 <= resp.status < 500:
                # e.g. the relay lost its database and ids started over: this ack can never succeed
                log.warning("relay refused the acknowledgement of %d (HTTP %d)", up_to, resp.status)
                self.acked_id = up_to
            else:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
