"""The gateway websocket: HELLO / IDENTIFY / READY / GUILD_CREATE, heartbeats, RESUME, dispatches.

Every session keeps the list of dispatches it was sent (for RESUME replay). Dispatches are
appended synchronously (sequence numbers are assigned in call order) and a writer task per
connection sends them in order, so events raised by sync test helpers never overtake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .models import IdentifyViolation, IdentifyViolationKind

if TYPE_CHECKING:
    from .server import FakeDiscord

log = logging.getLogger("fake_discord.gateway")

# Opcodes
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME, RECONNECT, REQUEST_MEMBERS = 0, 1, 2, 3, 4, 6, 7, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11

# Intents the fake looks at
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12


def shard_for(guild_id: int, shard_count: int) -> int:
    """Discord's sharding formula: the shard that receives events of ``guild_id``."""
    return (guild_id >> 22) % shard_count


@dataclass
class OutFrame:
    seq: int
    event: str
    text: str
    on_sent: Callable[[float], None] | None = None
    sent_at: float | None = None


@dataclass(eq=False)
class GatewaySession:
    """One identified gateway session (survives disconnects until invalidated; RESUME re-attaches)."""

    session_id: str
    number: int
    intents: int
    shard: tuple[int, int] | None
    identify: dict[str, Any]
    created_at: float
    seq: int = 0
    frames: list[OutFrame] = field(default_factory=list)
    connection: GatewayConnection | None = None
    ready_at: float | None = None
    invalidated: bool = False
    resumes: int = 0

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.closed

    @property
    def ready(self) -> bool:
        """READY and every GUILD_CREATE were written to the socket."""
        return self.ready_at is not None

    @property
    def shard_id(self) -> int:
        """The session's shard id (0 for an unsharded session)."""
        return 0 if self.shard is None else self.shard[0]

    def covers_guild(self, guild_id: int | None) -> bool:
        """Whether events of ``guild_id`` go to this session (``None``: events without a guild).

        Discord: ``shard_id = (guild_id >> 22) % num_shards``; events without a ``guild_id``
        (DMs, DM interactions) go to shard 0 only. An unsharded session gets everything.
        """
        if self.shard is None:
            return True
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_for(guild_id, count) == shard_id

    def has_intent(self, bit: int) -> bool:
        return bool(self.intents & bit)


class GatewayConnection:
    """One websocket; its writer sends the attached session's frames in sequence order."""

    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse, number: int) -> None:
        self.gateway = gateway
        self.ws = ws
        self.number = number
        self.session: GatewaySession | None = None
        self.sent_seq = 0
        self.closed = False
        self.close_code: int | None = None
        self.heartbeats = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def send_json(self, payload: dict[str, Any]) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload))

    def attach(self, session: GatewaySession, from_seq: int) -> None:
        self.session = session
        session.connection = self
        self.sent_seq = from_seq
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name=f"fake-gateway-writer-{self.number}")
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def _write_loop(self) -> None:
        try:
            while not self.closed:
                session = self.session
                while session is not None and self.sent_seq < session.seq and not self.closed:
                    frame = session.frames[self.sent_seq]
                    async with self._lock:
                        if self.ws.closed:
                            return
                        await self.ws.send_str(frame.text)
                    self.sent_seq = frame.seq
                    if frame.sent_at is None:
                        frame.sent_at = self.gateway.fake.now()
                        if frame.on_sent is not None:
                            frame.on_sent(frame.sent_at)
                    self.gateway.fake.notify()
                self._wake.clear()
                if session is not None and self.sent_seq < session.seq:
                    continue
                await self._wake.wait()
        except (ConnectionResetError, RuntimeError) as exc:  # socket went away mid-send
            log.debug("gateway writer %s stopped: %r", self.number, exc)

    async def close(self, code: int, message: str = "") -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=message.encode())

    async def stop_writer(self) -> None:
        self.closed = True
        self.wake()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer


class Gateway:
    """Gateway endpoint and session registry of a :class:`FakeDiscord`."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: list[GatewaySession] = []
        self.connections: list[GatewayConnection] = []
        self.received: list[dict[str, Any]] = []
        """Every payload a client sent on the gateway (IDENTIFY tokens redacted)."""
        self.identify_violations: list[IdentifyViolation] = []
        self._bucket_identified_at: dict[int, float] = {}
        """rate_limit_key -> time of the bucket's last accepted IDENTIFY."""
        self._session_starts = 0
        self._session_window_start: float | None = None
        self._acks: set[asyncio.Task[None]] = set()  # heartbeat ACKs on their way

    # --- session start limit ------------------------------------------------------------------

    def _session_window(self) -> float:
        return self.fake.config.scaled(self.fake.config.session_start_reset_after / 1000.0)

    def _refresh_session_window(self) -> None:
        start = self._session_window_start
        if start is not None and self.fake.now() >= start + self._session_window():
            self._session_starts = 0
            self._session_window_start = None

    def session_start_limit(self) -> dict[str, int]:
        """The ``session_start_limit`` object of ``GET /gateway/bot`` as of now."""
        config = self.fake.config
        self._refresh_session_window()
        start = self._session_window_start
        left = self._session_window() if start is None else start + self._session_window() - self.fake.now()
        return {
            "total": config.session_start_total,
            "remaining": max(0, config.session_start_total - self._session_starts),
            "reset_after": max(0, int(left * 1000)),
            "max_concurrency": config.max_concurrency,
        }

    def _violation(
        self,
        kind: IdentifyViolationKind,
        conn: GatewayConnection,
        shard: tuple[int, int] | None,
        key: int,
        previous: float | None = None,
    ) -> None:
        violation = IdentifyViolation(
            kind=kind,
            time=self.fake.now(),
            shard=shard,
            rate_limit_key=key,
            connection=conn.number,
            previous_identify_at=previous,
        )
        log.warning("fake gateway refused an IDENTIFY: %s", violation)
        self.identify_violations.append(violation)
        self.fake.notify()

    # --- dispatching --------------------------------------------------------------------------

    def enqueue(
        self, session: GatewaySession, event: str, data: Any, on_sent: Callable[[float], None] | None = None
    ) -> OutFrame:
        session.seq += 1
        text = json.dumps({"op": DISPATCH, "t": event, "s": session.seq, "d": data})
        frame = OutFrame(seq=session.seq, event=event, text=text, on_sent=on_sent)
        session.frames.append(frame)
        if session.connection is not None:
            session.connection.wake()
        return frame

    def live_sessions(self) -> list[GatewaySession]:
        """Identified, not invalidated sessions (connected or waiting for a RESUME)."""
        return [s for s in self.sessions if not s.invalidated]

    def broadcast(
        self, event: str, data: Any, *, guild_id: int | None = None, intent: int | None = None
    ) -> None:
        guild = self.fake.world.guilds.get(guild_id) if guild_id is not None else None
        if guild is not None and not guild.has_bot:  # the bot hears nothing of a guild it is not in
            return
        for session in self.live_sessions():
            if guild_id is not None and not session.covers_guild(guild_id):
                continue
            if intent is not None and not session.has_intent(intent):
                continue
            self.enqueue(session, event, data)

    def active_session(self, guild_id: int | None) -> GatewaySession | None:
        """The most recently readied, connected session that receives events of ``guild_id``."""
        candidates = [s for s in self.live_sessions() if s.connected and s.ready and s.covers_guild(guild_id)]
        return max(candidates, key=lambda s: s.ready_at or 0.0) if candidates else None

    # --- websocket handler --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0, timeout=2.0, compress=False)
        await ws.prepare(request)
        if self.fake.closing:
            await ws.close(code=1001, message=b"Going away.")
            return ws
        conn = GatewayConnection(self, ws, len(self.connections) + 1)
        self.connections.append(conn)
        self.fake.notify()
        try:
            await conn.send_json(
                {
                    "op": HELLO,
                    "t": None,
                    "s": None,
                    "d": {
                        "heartbeat_interval": self.fake.config.heartbeat_ms,
                        "_trace": ['["fake-gateway",{}]'],
                    },
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        payload = json.loads(msg.data)
                    except ValueError:
                        await conn.close(4002, "Error while decoding payload.")
                        break
                    await self._on_payload(conn, payload)
                elif msg.type == WSMsgType.BINARY:
                    await conn.close(4002, "Error while decoding payload.")
                    break
                else:
                    break
        finally:
            conn.close_code = ws.close_code
            await conn.stop_writer()
            session = conn.session
            if session is not None and session.connection is conn:
                session.connection = None
            self.fake.notify()
        return ws

    async def _on_payload(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        recorded = dict(payload)
        if op in (IDENTIFY, RESUME) and isinstance(data, dict):
            recorded["d"] = {**data, "token": "<redacted>"}
        self.received.append(recorded)
        if op == HEARTBEAT:
            conn.heartbeats += 1
            # Answered a round trip later (see FakeConfig.heartbeat_ack_delay), without holding
            # up the frames that follow on this socket.
            self._acks.add(task := asyncio.create_task(self._ack_heartbeat(conn)))
            task.add_done_callback(self._acks.discard)
        elif op == IDENTIFY:
            await self._identify(conn, data or {})
        elif op == RESUME:
            await self._resume(conn, data or {})
        elif op == REQUEST_MEMBERS:
            self._request_members(conn, data or {})
        elif op in (PRESENCE, VOICE):
            pass
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        else:
            log.info("fake gateway ignoring op %s", op)

    async def _ack_heartbeat(self, conn: GatewayConnection) -> None:
        await asyncio.sleep(self.fake.config.heartbeat_ack_delay)
        await conn.send_json({"op": HEARTBEAT_ACK, "t": None, "s": None, "d": None})

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str):
            return False
        token = token.removeprefix("Bot ")
        return secrets.compare_digest(token, self.fake.config.token)

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if not self._token_ok(data.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        shard: tuple[int, int] | None = None
        raw_shard = data.get("shard")
        if raw_shard is not None:
            valid = isinstance(raw_shard, list) and len(raw_shard) == 2
            valid = valid and all(isinstance(x, int) and not isinstance(x, bool) for x in raw_shard)
            shard = (int(raw_shard[0]), int(raw_shard[1])) if valid else (-1, 0)
            if shard[1] < 1 or not 0 <= shard[0] < shard[1]:
                await conn.close(4010, "Invalid shard.")
                return
        fake = self.fake
        config = fake.config
        if config.require_sharding and (shard is None or shard[1] < config.shard_count):
            await conn.close(4011, "Sharding required.")
            return
        key = (0 if shard is None else shard[0]) % max(1, config.max_concurrency)
        if self.session_start_limit()["remaining"] <= 0:
            # Discord then terminates every session and resets the token; the fake refuses this one.
            self._violation("session_start_limit", conn, shard, key)
            await conn.close(4004, "Authentication failed.")
            return
        now = fake.now()
        previous = self._bucket_identified_at.get(key)
        if previous is not None and now - previous < config.scaled(config.identify_window):
            self._violation("max_concurrency", conn, shard, key, previous)
            await conn.send_json({"op": INVALID_SESSION, "t": None, "s": None, "d": False})
            return
        self._bucket_identified_at[key] = now
        self._session_starts += 1
        if self._session_window_start is None:
            self._session_window_start = now
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            number=len(self.sessions) + 1,
            intents=int(data.get("intents") or 0),
            shard=shard,
            identify={k: v for k, v in data.items() if k != "token"},
            created_at=fake.now(),
        )
        self.sessions.append(session)
        world = fake.world
        guilds = [
            g for g in world.guilds.values() if not g.deleted and g.has_bot and session.covers_guild(g.id)
        ]
        ready: dict[str, Any] = {
            "v": 10,
            "user": world.client_user_json(),
            "user_settings": {},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": fake.gateway_url,
            "application": {"id": str(world.application_id), "flags": fake.config.application_flags},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "auth": {},
            "_trace": ['["fake-gateway",{}]'],
        }
        if shard is not None:
            ready["shard"] = [shard[0], shard[1]]

        def mark_ready(ts: float) -> None:
            session.ready_at = ts

        all_members = session.has_intent(INTENT_GUILD_MEMBERS)
        last = self.enqueue(session, "READY", ready)
        for guild in guilds:
            last = self.enqueue(
                session,
                "GUILD_CREATE",
                world.guild_create_json(guild, all_members=all_members, unavailable_flag=True),
            )
        last.on_sent = mark_ready
        conn.attach(session, 0)

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        if not self._token_ok(data.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        session = next((s for s in self.sessions if s.session_id == data.get("session_id")), None)
        seq = data.get("seq")
        if session is None or session.invalidated or not isinstance(seq, int) or seq > session.seq:
            await conn.send_json({"op": INVALID_SESSION, "t": None, "s": None, "d": False})
            return
        old = session.connection
        if old is not None and old is not conn:
            old.session = None
            await old.close(4000, "Session resumed elsewhere.")
        session.resumes += 1
        self.enqueue(session, "RESUMED", {"_trace": ['["fake-gateway",{}]']})
        conn.attach(session, seq)
        self.fake.notify()

    def _request_members(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        session = conn.session
        if session is None:
            return
        guild_ids = data.get("guild_id")
        if not isinstance(guild_ids, list):
            guild_ids = [guild_ids]
        for gid in guild_ids:
            guild = self.fake.world.guilds.get(int(gid))
            if guild is None or guild.deleted or not guild.has_bot or not session.covers_guild(guild.id):
                continue
            members = list(guild.members.values())
            user_ids = data.get("user_ids")
            if user_ids:
                wanted = {int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
                members = [m for m in members if m.id in wanted]
            elif data.get("query"):
                q = str(data["query"]).lower()
                members = [m for m in members if m.user.username.lower().startswith(q)]
            limit = int(data.get("limit") or 0)
            if limit:
                members = members[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [self.fake.world.member_json(m) for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            self.enqueue(session, "GUILD_MEMBERS_CHUNK", chunk)

    # --- test controls ------------------------------------------------------------------------

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connected session (the client should RESUME)."""
        for conn in [c for c in self.connections if not c.closed]:
            await conn.send_json({"op": RECONNECT, "t": None, "s": None, "d": None})

    async def close_all(self, code: int = 4000) -> None:
        """Close every open gateway socket with ``code`` (4000 lets discord.py RESUME)."""
        for conn in [c for c in self.connections if not c.closed]:
            await conn.close(code)

    def invalidate_sessions(self) -> None:
        """Forget every session: a later RESUME gets INVALID_SESSION and must IDENTIFY again."""
        for s in self.sessions:
            s.invalidated = True

    async def shutdown(self) -> None:
        for ack in list(self._acks):
            ack.cancel()
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.close(1001, "Going away.")
            await conn.stop_writer()
