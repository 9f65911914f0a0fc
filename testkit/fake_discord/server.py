"""``FakeDiscord``: one aiohttp server on loopback speaking Discord's REST, gateway and CDN protocols."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from .config import FakeConfig
from .errors import ApiError, Code, NoBotConnected, WaitTimeout
from .gateway import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    Gateway,
    GatewaySession,
    shard_for,
)
from .http_util import Injection, drain, json_response, ratelimit_headers, route_regex, split_pattern
from .interactions import AttachmentSpec, FakeInteraction, SlashBuilder
from .models import (
    EventKind,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    IdentifyViolation,
    MessageEvent,
    MessageRoute,
    Perm,
    RecordedMessage,
    RequestRecord,
)
from .rest import Ctx, MessageFields, RestApi
from .spec import Direction, FieldError, SpecRoute, SpecViolation, errors_tree, load_spec
from .world import World, iso

log = logging.getLogger("fake_discord")

API_PREFIX = "/api/v10"

# Answers by which Discord refuses a request's form: a test whose bot sent one has a bug.
FORM_ERROR_CODES = (Code.INVALID_FORM_BODY, Code.INVALID_JSON)

_watchers: list[list[FakeDiscord]] = []


@contextlib.contextmanager
def watch_fakes() -> Iterator[list[FakeDiscord]]:
    """Collects every ``FakeDiscord`` created inside the block (the test harness uses it to fail
    a test whose fake recorded a spec violation: ``tests/conftest.py``)."""
    started: list[FakeDiscord] = []
    _watchers.append(started)
    try:
        yield started
    finally:
        _watchers.remove(started)


class FakeDiscord:
    """A Discord-compatible fake an unmodified discord.py bot can connect to.

    Use as ``async with FakeDiscord(FakeConfig(...)) as fake:``; point the bot at it with
    ``discord.http.Route.BASE = fake.api_base`` and
    ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``.
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config: FakeConfig = config or FakeConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._changed = asyncio.Event()
        self.world = World(self.config, self.now)
        self.gateway = Gateway(self)
        self.rest = RestApi(self)
        self.requests: list[RequestRecord] = []
        """Every HTTP request answered (REST and CDN), in order."""
        self.events: list[MessageEvent] = []
        """Every message event (create / edit / delete), in order."""
        self.interactions: list[FakeInteraction] = []
        self.interactions_by_id: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        self.injections: list[Injection] = []
        self._runner: web.AppRunner | None = None
        self.closing = False
        self.port = 0
        self.spec = load_spec()
        self.spec_violations: list[SpecViolation] = []
        """Requests Discord would refuse (spec, or its stricter rules): answered 400 / 50035 (or
        50109 for bad JSON). The test harness fails a test that leaves any here; a test that
        sends one on purpose takes them with :meth:`accept_violations`."""
        self.response_violations: list[SpecViolation] = []
        """Answers of the fake's own the spec does not allow: bugs in the fake (fail the test)."""
        for watcher in _watchers:
            watcher.append(self)

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self._handle_http)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.world.cdn_base = f"http://{self.config.host}:{self.port}"

    async def stop(self) -> None:
        self.closing = True
        for v in [*self.spec_violations, *self.response_violations]:
            log.error("fake discord: spec violation: %s", v)
        await self.gateway.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- addresses and identity -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (wrap in ``yarl.URL``)."""
        return f"ws://{self.config.host}:{self.port}/gateway"

    @property
    def cdn_base(self) -> str:
        return self.world.cdn_base

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user_id(self) -> int:
        return self.world.bot_user.id

    @property
    def bot_user(self) -> FakeUser:
        return self.world.bot_user

    # --- the spec ------------------------------------------------------------------------------

    def accept_violations(self) -> list[SpecViolation]:
        """The request violations so far, cleared: for a test that sent them on purpose (and
        asserts on them); any left at the end of a test fail it."""
        taken = list(self.spec_violations)
        self.spec_violations.clear()
        return taken

    def _violation(
        self,
        kind: Direction,
        rec: RequestRecord,
        status: int,
        spec_route: SpecRoute | None,
        errors: list[FieldError],
    ) -> None:
        found = SpecViolation(
            kind,
            rec.method,
            rec.path,
            spec_route.template if spec_route else None,
            status,
            errors,
            self.now(),
        )
        (self.spec_violations if kind == "request" else self.response_violations).append(found)
        log.warning("fake discord: %s", found)

    # --- clock and waiting ----------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the fake started (the clock of every recorded time)."""
        if self._loop is None:
            return 0.0
        return self._loop.time() - self._t0

    def notify(self) -> None:
        """Wake every waiter (called on each state change)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float, describe: Callable[[], str] | str = "condition"
    ) -> None:
        """Wait (event-driven, no polling) until ``predicate()`` is true; else :class:`WaitTimeout`.

        ``predicate`` is re-evaluated whenever the fake's state changes (a request, a gateway
        frame, a message event...), so it must depend on the fake's state, not on a client's.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WaitTimeout(describe() if callable(describe) else f"timed out waiting for {describe}")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_for_ready(self, timeout: float = 10.0, *, count: int | None = None) -> GatewaySession:
        """Wait until a bot is connected and READY + every GUILD_CREATE were sent to it.

        ``count``: additionally wait until at least that many sessions became ready overall
        (use ``count=2`` after restarting the bot to wait for the *new* session).
        """

        def ok() -> bool:
            if count is not None and self.ready_count < count:
                return False
            return any(s.ready and s.connected for s in self.gateway.sessions)

        await self.wait_until(
            ok,
            timeout,
            lambda: (
                f"no ready gateway session within {timeout}s (sessions: "
                f"{[(s.number, s.ready, s.connected) for s in self.gateway.sessions]}, "
                f"connections: {len(self.gateway.connections)}, "
                f"requests: {[r.route for r in self.requests][-10:]})"
            ),
        )
        ready = [s for s in self.gateway.sessions if s.ready and s.connected]
        return max(ready, key=lambda s: s.ready_at or 0.0)

    def _shard_sessions(self, shard_count: int, shard_ids: list[int]) -> dict[int, GatewaySession]:
        """shard id -> the most recently readied connected session identified as ``[id, shard_count]``."""
        found: dict[int, GatewaySession] = {}
        for session in self.gateway.live_sessions():
            if session.shard is None or session.shard[1] != shard_count or session.shard[0] not in shard_ids:
                continue
            if not (session.ready and session.connected):
                continue
            best = found.get(session.shard[0])
            if best is None or (session.ready_at or 0.0) >= (best.ready_at or 0.0):
                found[session.shard[0]] = session
        return found

    async def wait_for_all_shards_ready(
        self,
        shard_count: int | None = None,
        timeout: float = 10.0,
        *,
        shard_ids: list[int] | None = None,
    ) -> list[GatewaySession]:
        """Wait until every shard ``0..shard_count-1`` (or just ``shard_ids``) has a connected session
        identified with ``shard = [id, shard_count]`` whose READY and GUILD_CREATEs were written.

        ``shard_count`` defaults to ``config.shard_count``. Returns the sessions in shard id order
        (per shard the most recently readied one).
        """
        count = self.config.shard_count if shard_count is None else shard_count
        wanted = list(range(count)) if shard_ids is None else list(shard_ids)
        await self.wait_until(
            lambda: len(self._shard_sessions(count, wanted)) == len(wanted),
            timeout,
            lambda: (
                f"shards {wanted} of {count} not all ready within {timeout}s (ready: "
                f"{sorted(self._shard_sessions(count, wanted))}; sessions: "
                f"{[(s.number, s.shard, s.ready, s.connected) for s in self.gateway.sessions]}; "
                f"identify violations: {self.identify_violations})"
            ),
        )
        found = self._shard_sessions(count, wanted)
        return [found[i] for i in wanted]

    async def wait_for_disconnect(self, timeout: float = 10.0) -> None:
        """Wait until no gateway socket is open."""
        await self.wait_until(
            lambda: all(c.closed for c in self.gateway.connections),
            timeout,
            "every gateway connection to close",
        )

    async def wait_for(
        self, predicate: Callable[[MessageEvent], bool], timeout: float = 30.0, *, include_past: bool = True
    ) -> MessageEvent:
        """The first message event (channel post, DM, follow-up, edit, delete...) matching ``predicate``.

        With ``include_past`` (default) events that already happened count too.
        """
        start = 0 if include_past else len(self.events)
        found: list[MessageEvent] = []

        def check() -> bool:
            for ev in self.events[start:]:
                if predicate(ev):
                    found.append(ev)
                    return True
            return False

        await self.wait_until(
            check,
            timeout,
            lambda: (
                f"no matching message event within {timeout}s; events: {self.events[start:][-10:]}; "
                f"recent errors: {self._recent_errors()}"
            ),
        )
        return found[0]

    def _recent_errors(self) -> list[tuple[str, str, int, int | None]]:
        errors = [(r.method, r.route or r.path, r.status, r.code) for r in self.requests if r.status >= 400]
        return errors[-10:]

    async def wait_for_request(
        self, pattern: str, timeout: float = 10.0, *, status: int | None = None, include_past: bool = True
    ) -> RequestRecord:
        """The first REST request matching ``pattern`` (e.g. ``"PUT /applications/{id}/commands"``)."""
        method, path = split_pattern(pattern)
        rx = route_regex(path)
        start = 0 if include_past else len(self.requests)
        found: list[RequestRecord] = []

        def check() -> bool:
            for rec in self.requests[start:]:
                sub = rec.path[len(API_PREFIX) :] if rec.path.startswith(API_PREFIX) else rec.path
                if (
                    (method is None or rec.method == method)
                    and rx.match(sub)
                    and (status is None or rec.status == status)
                ):
                    found.append(rec)
                    return True
            return False

        await self.wait_until(check, timeout, f"a request matching {pattern!r}")
        return found[0]

    # --- world setup (usable before or after the bot connects) -----------------------------------

    def add_user(
        self,
        username: str,
        *,
        global_name: str | None = None,
        accepts_dms: bool = True,
        locale: str | None = None,
    ) -> FakeUser:
        """A user; ``accepts_dms=False`` makes the bot's DMs to them fail with 403 / 50007."""
        return self.world.add_user(username, global_name=global_name, accepts_dms=accepts_dms, locale=locale)

    def add_guild(
        self,
        name: str = "Test",
        *,
        filesize_limit: int | None = None,
        premium_tier: int | None = None,
        owner: FakeUser | None = None,
        bot_permissions: int = Perm.BOT_DEFAULT,
        locale: str | None = None,
        shard: int | None = None,
        with_bot: bool = True,
    ) -> FakeGuild:
        """A guild the bot is in (with an @everyone role, a managed bot role and the bot's member).

        ``with_bot=False``: a guild the bot is NOT in (no bot member or role, no GUILD_CREATE and
        no events to the bot, its guild and channel routes answer the bot 403 / 50001): members
        who installed the app for themselves (:meth:`install_app`) still use its user-installable
        commands there, and the answers go through the interaction's token.

        ``filesize_limit`` (default 10 MiB) is enforced on channel uploads and is the default
        ``attachment_size_limit`` of its interactions; ``premium_tier`` defaults to the tier
        matching it, so discord.py's ``Guild.filesize_limit`` agrees for 10/50/100 MiB.
        ``shard``: give the guild an id that lands on that shard for ``config.shard_count``
        (``(id >> 22) % shard_count == shard``); ``None`` = wherever its id falls.
        """
        guild = self.world.add_guild(
            name,
            filesize_limit=filesize_limit,
            premium_tier=premium_tier,
            owner=owner,
            bot_permissions=bot_permissions,
            locale=locale,
            shard=shard,
            with_bot=with_bot,
        )
        if not with_bot:
            return guild
        for session in self.gateway.live_sessions():
            if session.covers_guild(guild.id):
                self.gateway.enqueue(
                    session,
                    "GUILD_CREATE",
                    self.world.guild_create_json(
                        guild, all_members=session.has_intent(INTENT_GUILD_MEMBERS), unavailable_flag=False
                    ),
                )
        return guild

    def add_text_channel(
        self,
        guild: FakeGuild,
        name: str = "general",
        *,
        bot_can_send: bool = True,
        bot_can_attach: bool = True,
        bot_can_view: bool = True,
        topic: str | None = None,
        nsfw: bool = False,
    ) -> FakeChannel:
        """A text channel; the bot's Send / Attach / View permissions there come from a member
        overwrite; ``nsfw``: marked age-restricted."""
        chan = self.world.add_text_channel(
            guild,
            name,
            bot_can_send=bot_can_send,
            bot_can_attach=bot_can_attach,
            bot_can_view=bot_can_view,
            topic=topic,
        )
        chan.nsfw = nsfw
        self.gateway.broadcast("CHANNEL_CREATE", self.world.channel_json(chan), guild_id=guild.id)
        return chan

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int = 0) -> FakeRole:
        role = self.world.add_role(guild, name, permissions=permissions)
        self.gateway.broadcast(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(guild.id), "role": self.world.role_json(role)},
            guild_id=guild.id,
        )
        return role

    def add_member(
        self,
        guild: FakeGuild,
        user: FakeUser,
        *,
        roles: list[FakeRole | int] | None = None,
        nick: str | None = None,
        manage_guild: bool = False,
        administrator: bool = False,
    ) -> FakeMember:
        """Make ``user`` a member; ``manage_guild`` / ``administrator`` add a role granting that."""
        member = self.world.add_member(
            guild, user, roles=roles, nick=nick, manage_guild=manage_guild, administrator=administrator
        )
        self.gateway.broadcast(
            "GUILD_MEMBER_ADD",
            {**self.world.member_json(member), "guild_id": str(guild.id)},
            guild_id=guild.id,
            intent=INTENT_GUILD_MEMBERS,
        )
        return member

    def dm_channel_for(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user`` (the one ``POST /users/@me/channels`` returns)."""
        return self.world.dm_channel_for(user)

    def install_app(self, user: FakeUser, *, installed: bool = True) -> None:
        """The app is installed for ``user`` (a user install; ``installed=False`` removes it): its
        commands whose ``integration_types`` include 1 then work for them anywhere, also in
        guilds the bot is not in and in group DMs; their interactions name the user under "1"
        of ``authorizing_integration_owners``."""
        user.app_installed = installed

    def add_group_dm(self, *users: FakeUser, name: str | None = None) -> FakeChannel:
        """A group DM among ``users`` (channel type 3). The bot is never in one: its routes answer
        it 403 / 50001, and commands reach it only through a member's user install (context 2)."""
        if len(users) < 2:
            raise ValueError("a group DM has at least two users")
        return self.world.add_group_dm(list(users), name)

    def set_bot_permissions(
        self,
        channel: FakeChannel,
        *,
        send: bool | None = None,
        attach: bool | None = None,
        view: bool | None = None,
    ) -> None:
        """Allow/deny the bot's Send Messages / Attach Files / View Channel in ``channel`` (None = unchanged).
        The bot is told with CHANNEL_UPDATE."""
        if channel.is_dm:
            raise ValueError("DM channels have no permission overwrites")
        self.world.set_bot_overwrite(channel, send=send, attach=attach, view=view)
        self.gateway.broadcast("CHANNEL_UPDATE", self.world.channel_json(channel), guild_id=channel.guild_id)
        self.notify()

    def delete_channel(self, channel: FakeChannel) -> None:
        """Delete a guild channel: its routes answer 404 / 10003 and the bot gets CHANNEL_DELETE."""
        if channel.is_dm:
            raise ValueError("DM channels cannot be deleted")
        channel.deleted = True
        self.gateway.broadcast("CHANNEL_DELETE", self.world.channel_json(channel), guild_id=channel.guild_id)
        self.notify()

    def remove_guild(self, guild: FakeGuild) -> None:
        """The bot leaves / is kicked from ``guild`` (GUILD_DELETE)."""
        guild.deleted = True
        self.gateway.broadcast("GUILD_DELETE", {"id": str(guild.id)}, guild_id=guild.id)
        self.notify()

    # --- recorded state -------------------------------------------------------------------------

    @property
    def messages(self) -> list[RecordedMessage]:
        """Every message the bot created, in creation order (incl. deleted ones and defer placeholders)."""
        return list(self.world.message_order)

    def message(self, message_id: int) -> RecordedMessage:
        return self.world.messages[message_id]

    def channel_messages(self, channel: FakeChannel) -> list[RecordedMessage]:
        return [m for m in self.world.message_order if m.channel_id == channel.id]

    def dm_messages(self, user: FakeUser) -> list[RecordedMessage]:
        """Messages in the DM channel with ``user`` (DM posts and DM-context interaction messages)."""
        chan = self.world.dm_by_user.get(user.id)
        return [] if chan is None else self.channel_messages(chan)

    @property
    def unknown_requests(self) -> list[RequestRecord]:
        """Requests to routes the fake does not implement (answered 404 / 405)."""
        return [r for r in self.requests if r.route is None]

    def commands(self, guild: FakeGuild | None = None) -> list[dict[str, Any]]:
        """Synced application commands (global, or of ``guild``) as Discord stores them (with ids)."""
        if guild is None:
            return list(self.world.global_commands)
        return list(self.world.guild_commands.get(guild.id, []))

    @property
    def sessions(self) -> list[GatewaySession]:
        return list(self.gateway.sessions)

    @property
    def identify_violations(self) -> list[IdentifyViolation]:
        """IDENTIFYs refused for the session start rules (bucket rate: op 9; ``remaining`` 0: 4004)."""
        return list(self.gateway.identify_violations)

    @property
    def session_start_limit(self) -> dict[str, int]:
        """What ``GET /gateway/bot`` would report as ``session_start_limit`` now."""
        return self.gateway.session_start_limit()

    def shard_of(self, guild: FakeGuild | int, shard_count: int | None = None) -> int:
        """The shard (of ``shard_count``, default ``config.shard_count``) that gets ``guild``'s events."""
        gid = guild if isinstance(guild, int) else guild.id
        return shard_for(gid, self.config.shard_count if shard_count is None else shard_count)

    @property
    def ready_count(self) -> int:
        """How many gateway sessions got READY + GUILD_CREATEs so far."""
        return sum(1 for s in self.gateway.sessions if s.ready)

    # --- faults and gateway control ---------------------------------------------------------------

    def inject(
        self,
        route_pattern: str,
        status: int | None = 500,
        *,
        count: int | None = 1,
        retry_after: float = 0.2,
        code: int | None = None,
        message: str | None = None,
        delay: float = 0.0,
        is_global: bool = False,
        body: Any = None,
    ) -> Injection:
        """Make the next ``count`` requests matching ``route_pattern`` fail (or just be slow).

        ``route_pattern``: ``"METHOD /path"`` with ``{placeholders}`` for segments and ``*`` for
        anything (method optional or ``*``); e.g. ``"POST /channels/{id}/messages"`` or
        ``"/webhooks/*"``; CDN downloads match ``"GET /attachments/*"``. ``status``: 429 answers
        Discord's rate-limit body with ``retry_after`` (discord.py sleeps and retries); 5xx makes
        discord.py retry after 1, 3, 5... s; ``None`` only applies ``delay`` and then handles the
        request normally. ``count=None`` = forever. ``code``/``message``/``body`` override the
        JSON error body.
        """
        inj = Injection(
            pattern=route_pattern,
            status=status,
            count=count,
            retry_after=retry_after,
            code=code,
            message=message,
            delay=delay,
            is_global=is_global,
            body=body,
        )
        self.injections.append(inj)
        return inj

    def clear_injections(self) -> None:
        self.injections.clear()

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT to the bot (discord.py reconnects and RESUMEs)."""
        await self.gateway.request_reconnect()

    async def close_gateway(self, code: int = 4000) -> None:
        """Close the bot's gateway socket(s) with ``code``."""
        await self.gateway.close_all(code)

    def invalidate_sessions(self) -> None:
        """Make every existing session non-resumable (RESUME -> INVALID_SESSION -> fresh IDENTIFY)."""
        self.gateway.invalidate_sessions()

    # --- interactions -----------------------------------------------------------------------------

    def _base_interaction(
        self,
        itype: int,
        user: FakeUser,
        guild: FakeGuild | None,
        channel: FakeChannel,
        attachment_size_limit: int | None,
        locale: str | None,
        app_permissions: int | None,
        *,
        command: dict[str, Any] | None = None,
        owners: dict[str, str] | None = None,
    ) -> tuple[FakeInteraction, dict[str, Any], FakeMember | None]:
        """``command``: the synced command invoked (its ``contexts`` and ``integration_types``
        decide whether Discord offers it here, and who authorizes it); ``owners``: the
        ``authorizing_integration_owners`` to carry over (a component's or a modal's: those of
        the interaction that made the message or opened the modal)."""
        world = self.world
        if channel.deleted:
            raise ValueError(f"channel {channel.name!r} is deleted")
        member: FakeMember | None = None
        if guild is None and channel.guild_id is not None:
            guild = world.guilds[channel.guild_id]
        if guild is not None:
            if guild.deleted:
                raise ValueError(f"the bot is not in guild {guild.name!r}")
            if channel.guild_id != guild.id:
                raise ValueError(f"channel {channel.name!r} is not in guild {guild.name!r}")
            member = guild.members.get(user.id)
            if member is None:
                raise ValueError(
                    f"{user.username!r} is not a member of {guild.name!r}; call add_member first"
                )
        elif channel.is_group_dm:
            if user not in channel.recipients:
                raise ValueError(f"{user.username!r} is not in that group DM")
        elif channel.recipient is not user:
            raise ValueError("a DM interaction must happen in dm_channel_for(user)")
        context = 0 if guild is not None else (2 if channel.is_group_dm else 1)
        if owners is None:
            owners = self._authorizing_owners(user, guild, context, command)
        if attachment_size_limit is None:
            attachment_size_limit = (
                guild.filesize_limit if guild else self.config.default_attachment_size_limit
            )
        iid = world.snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        bot_perms = app_permissions
        if bot_perms is None:  # where the bot is not, the app answers with Discord's small set
            absent = channel.is_group_dm or (guild is not None and not guild.has_bot)
            bot_perms = Perm.APP_ELSEWHERE if absent else world.bot_permissions(channel)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(world.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "locale": locale or user.locale,
            "app_permissions": str(bot_perms),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": attachment_size_limit,
        }
        if guild is not None and member is not None:
            member_perms = world.permissions_in(member, channel)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": []},
                guild_locale=guild.locale,
                channel_id=str(channel.id),
                channel={**world.channel_json(channel), "permissions": str(member_perms)},
                member={**world.member_json(member), "permissions": str(member_perms)},
                authorizing_integration_owners=owners,
                context=context,
            )
        else:
            payload.update(
                channel_id=str(channel.id),
                channel={**world.channel_json(channel), "permissions": str(Perm.DM_DEFAULT)},
                user=world.user_json(user),
                authorizing_integration_owners=owners,
                context=context,
            )
        inter = FakeInteraction(
            fake=self,
            id=iid,
            token=token,
            type=itype,
            name=None,
            custom_id=None,
            user=user,
            guild=guild,
            channel=channel,
            attachment_size_limit=attachment_size_limit,
            payload=payload,
            created_at=self.now(),
        )
        return inter, payload, member

    def _authorizing_owners(
        self, user: FakeUser, guild: FakeGuild | None, context: int, command: dict[str, Any] | None
    ) -> dict[str, str]:
        """Who authorizes a command here, as Discord decides it: each installation the command
        allows (``integration_types``; a guild command: the guild's only; unsynced: both) that
        exists here. The guild install ("0": the guild's id, or "0" in the bot's DM) exists where
        the bot is (a guild it is in, its DM); the user install ("1": the user's id) wherever
        the user installed the app. A command whose ``contexts`` leave this one out, or with no
        installation here, is one Discord's client does not offer: ``ValueError``."""
        name = command.get("name") if command else None
        contexts = command.get("contexts") if command else None
        if contexts is not None and context not in contexts:
            raise ValueError(f"command {name!r} is not offered in context {context} (it allows {contexts})")
        if command is None:
            types = [0, 1]
        elif command.get("guild_id"):
            types = [0]  # guild commands exist only through the guild's install
        else:
            types = [int(t) for t in command.get("integration_types") or [0]]
        owners: dict[str, str] = {}
        if 0 in types and (context == 1 or (guild is not None and guild.has_bot)):
            owners["0"] = str(guild.id) if guild is not None else "0"
        if 1 in types and user.app_installed:
            owners["1"] = str(user.id)
        if not owners:
            where = "a group DM" if context == 2 else f"guild {guild.name!r}" if guild else "a DM"
            raise ValueError(
                f"command {name!r} is not offered to {user.username!r} in {where}: the bot is not there "
                "and the command is not installed for the user (install_app, integration_types 1)"
            )
        return owners

    def _owners_of_message(self, message: RecordedMessage) -> dict[str, str] | None:
        """A component's owners: those of the interaction whose answer the message is."""
        origin = self.interactions_by_id.get(message.interaction_id or 0)
        if origin is None:
            return None
        owners: dict[str, str] = origin.payload.get("authorizing_integration_owners") or {}
        return dict(owners)

    async def _dispatch_interaction(self, inter: FakeInteraction) -> FakeInteraction:
        guild_id = inter.guild.id if inter.guild else None
        session = self.gateway.active_session(guild_id)
        if session is None:
            raise NoBotConnected("no connected, ready bot session to deliver the interaction to")
        self.interactions.append(inter)
        self.interactions_by_id[inter.id] = inter
        self.interactions_by_token[inter.token] = inter

        def sent(ts: float) -> None:
            inter.dispatched_at = ts

        self.gateway.enqueue(session, "INTERACTION_CREATE", inter.payload, on_sent=sent)
        await self.wait_until(
            lambda: inter.dispatched_at is not None or not session.connected,
            10.0,
            "the INTERACTION_CREATE frame to be written",
        )
        if inter.dispatched_at is None:
            raise NoBotConnected("the bot disconnected before the interaction could be delivered")
        return inter

    def _find_command(self, name: str, guild: FakeGuild | None) -> dict[str, Any] | None:
        pools = []
        if guild is not None:
            pools.append(self.world.guild_commands.get(guild.id, []))
        pools.append(self.world.global_commands)
        for pool in pools:
            for cmd in pool:
                if cmd["name"] == name and int(cmd.get("type", 1)) == 1:
                    return cmd
        return None

    async def invoke_slash(
        self,
        name: str,
        *,
        user: FakeUser,
        guild: FakeGuild | None = None,
        channel: FakeChannel | None = None,
        options: Mapping[str, Any] | None = None,
        attachments: Mapping[str, AttachmentSpec] | None = None,
        attachment_size_limit: int | None = None,
        locale: str | None = None,
        app_permissions: int | None = None,
        validate: bool = True,
    ) -> FakeInteraction:
        """Dispatch a slash-command INTERACTION_CREATE as ``user`` and return its handle.

        ``name`` may be ``"cmd"``, ``"cmd sub"`` or ``"cmd group sub"``. Option types come from the
        synced command (guild first, then global) when known, else are inferred (str 3, int 4,
        bool 5, float 10, FakeUser/FakeMember 6, FakeChannel 7, FakeRole 8, attachment 11).
        ``attachments`` maps option names to ``(bytes, filename[, content_type])``; they are served
        by the fake CDN and appear in ``data.resolved.attachments``. With ``validate`` (default),
        options must fit the synced command (required present, known names, choices, ranges).
        ``guild=None`` + no channel = the user's DM with the bot. ``attachment_size_limit``
        defaults to the guild's ``filesize_limit`` (DMs: ``config.default_attachment_size_limit``).
        """
        if channel is None:
            if guild is not None:
                if not guild.text_channels:
                    raise ValueError(f"guild {guild.name!r} has no text channel")
                channel = guild.text_channels[0]
            else:
                channel = self.dm_channel_for(user)
        parts = name.split()
        cmd = self._find_command(parts[0], guild or self.world.guild_of(channel))
        inter, payload, member = self._base_interaction(
            2, user, guild, channel, attachment_size_limit, locale, app_permissions,
            command=cmd if validate else None,
        )  # fmt: skip
        if (
            cmd is None
            and validate
            and (self.world.global_commands or any(self.world.guild_commands.values()))
        ):
            known = sorted(
                {c["name"] for c in self.world.global_commands}
                | {c["name"] for cs in self.world.guild_commands.values() for c in cs}
            )
            raise ValueError(f"command {parts[0]!r} is not synced (synced: {known}); pass validate=False")
        schema: list[dict[str, Any]] | None = cmd.get("options", []) if cmd else None
        chain: list[tuple[str, int]] = []
        for depth, sub in enumerate(parts[1:]):
            sub_schema = next((o for o in schema or [] if o["name"] == sub and o.get("type") in (1, 2)), None)
            if schema is not None and sub_schema is None:
                raise ValueError(f"{sub!r} is not a sub-command of {' '.join(parts[: depth + 1])!r}")
            stype = int(sub_schema["type"]) if sub_schema else (2 if depth == 0 and len(parts) == 3 else 1)
            chain.append((sub, stype))
            schema = sub_schema.get("options", []) if sub_schema else None
        builder = SlashBuilder(self, inter.guild, channel, member, validate)
        values: dict[str, Any] = dict(options or {})
        for opt_name, spec in (attachments or {}).items():
            values[opt_name] = spec
        opts = builder.build_options(schema, values)
        for sub, stype in reversed(chain):
            opts = [{"name": sub, "type": stype, "options": opts}]
        data: dict[str, Any] = {
            "id": cmd["id"] if cmd else str(self.world.snowflake()),
            "name": parts[0],
            "type": 1,
            "options": opts,
        }
        if builder.resolved:
            data["resolved"] = builder.resolved
        if cmd and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        payload["data"] = data
        inter.name = name
        inter.user_attachments = builder.user_attachments
        return await self._dispatch_interaction(inter)

    def post_as(
        self,
        user: FakeUser,
        channel: FakeChannel,
        content: str = "",
        *,
        files: Sequence[tuple[bytes, str] | tuple[bytes, str, str]] = (),
        embeds: list[dict[str, Any]] | None = None,
    ) -> RecordedMessage:
        """A member posts ``content`` (with ``files``, each ``(bytes, filename[, content_type])``
        served by the fake CDN, and ``embeds``, as an unfurled link shows one) in ``channel``:
        a message for a message command to target."""
        stored = [
            self.world.store_file(channel.id, spec[1], spec[0], spec[2] if len(spec) == 3 else None)
            for spec in files
        ]
        fields = MessageFields(content, list(embeds or []), [], stored, 0, False, stored)
        return self.create_message(channel, "user_post", fields, author=user)

    def react(self, message: RecordedMessage, user: FakeUser, emoji: str = "⭐", *, add: bool = True) -> None:
        """``user`` adds (or removes) a Unicode ``emoji`` reaction on ``message``: the gateway's
        MESSAGE_REACTION_ADD (or _REMOVE) to the session that carries its server."""
        channel = self.world.channels[message.channel_id]
        data: dict[str, Any] = {
            "user_id": str(user.id), "channel_id": str(channel.id), "message_id": str(message.id),
            "emoji": {"id": None, "name": emoji}, "burst": False, "type": 0,
        }  # fmt: skip
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
            if add:
                data["message_author_id"] = str(message.author_id)
                member = self.world.guilds[channel.guild_id].members.get(user.id)
                if member is not None:
                    data["member"] = self.world.member_json(member)
        event = "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"
        self.gateway.broadcast(event, data, guild_id=channel.guild_id, intent=INTENT_GUILD_MESSAGE_REACTIONS)

    async def invoke_message_command(
        self, name: str, message: RecordedMessage, *, user: FakeUser, locale: str | None = None
    ) -> FakeInteraction:
        """Dispatch a message context-menu command (Apps ▸ ``name`` on ``message``) as ``user``:
        an application command (type 2) of command type 3, the message in ``resolved``."""
        channel = self.world.channels[message.channel_id]
        guild = self.world.guild_of(channel)
        pools = [self.world.guild_commands.get(guild.id, []) if guild else [], self.world.global_commands]
        cmd = next(
            (c for pool in pools for c in pool if c["name"] == name and int(c.get("type", 1)) == 3), None
        )
        inter, payload, _ = self._base_interaction(2, user, guild, channel, None, locale, None, command=cmd)
        payload["data"] = {
            "id": cmd["id"] if cmd else str(self.world.snowflake()),
            "name": name,
            "type": 3,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): self.world.message_json(message)}},
        }
        if cmd and cmd.get("guild_id"):
            payload["data"]["guild_id"] = cmd["guild_id"]
        inter.name = name
        inter.source_message = message
        return await self._dispatch_interaction(inter)

    def _find_component(self, components: list[Any], custom_id: str) -> dict[str, Any] | None:
        for c in components:
            if not isinstance(c, dict):
                continue
            if c.get("custom_id") == custom_id:
                return c
            for key in ("components",):
                if isinstance(c.get(key), list):
                    found = self._find_component(c[key], custom_id)
                    if found is not None:
                        return found
            for key in ("accessory", "component"):
                if isinstance(c.get(key), dict):
                    found = self._find_component([c[key]], custom_id)
                    if found is not None:
                        return found
        return None

    def _custom_ids(self, components: list[Any]) -> list[str]:
        out: list[str] = []
        for c in components:
            if isinstance(c, dict):
                if c.get("custom_id"):
                    out.append(c["custom_id"])
                out.extend(self._custom_ids(c.get("components") or []))
                for key in ("accessory", "component"):
                    if isinstance(c.get(key), dict):
                        out.extend(self._custom_ids([c[key]]))
        return out

    async def use_component(
        self,
        message: RecordedMessage | MessageEvent | int,
        custom_id: str,
        *,
        user: FakeUser,
        values: list[str] | None = None,
        attachment_size_limit: int | None = None,
        locale: str | None = None,
        check: bool = True,
    ) -> FakeInteraction:
        """Dispatch a component INTERACTION_CREATE (type 3) for ``custom_id`` on ``message``.

        With ``check`` (default) the component must exist on the message's current version and
        not be disabled (Discord's client would not let a user click it otherwise).
        """
        if isinstance(message, MessageEvent):
            msg = message.message
        elif isinstance(message, int):
            msg = self.world.messages[message]
        else:
            msg = message
        if msg.deleted:
            raise ValueError(f"message {msg.id} was deleted")
        comp = self._find_component(msg.components, custom_id)
        if check and comp is None:
            raise ValueError(
                f"no component {custom_id!r} on message {msg.id} "
                f"(custom_ids: {self._custom_ids(msg.components)})"
            )
        if check and comp is not None and comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} on message {msg.id} is disabled")
        channel = self.world.channels[msg.channel_id]
        guild = self.world.guild_of(channel)
        inter, payload, _ = self._base_interaction(
            3, user, guild, channel, attachment_size_limit, locale, None, owners=self._owners_of_message(msg)
        )
        ctype = int(comp.get("type", 2)) if comp else (3 if values is not None else 2)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
        if comp is not None and "id" in comp:
            data["id"] = comp["id"]
        if values is not None or ctype in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
        payload["data"] = data
        payload["message"] = self.world.message_json(msg)
        inter.custom_id = custom_id
        inter.source_message = msg
        return await self._dispatch_interaction(inter)

    async def submit_modal(
        self,
        opened: FakeInteraction,
        values: Mapping[str, str | list[str]] | None = None,
        *,
        user: FakeUser | None = None,
    ) -> FakeInteraction:
        """Submit the modal that ``opened`` was answered with (callback type 9) as a MODAL_SUBMIT
        interaction (type 5), as Discord's client does when the user presses Submit.

        ``values`` maps a text input's or select's custom_id to what the user left in it (a
        string, or a list of chosen option values); anything not given keeps the modal's own
        prefill (a text input's ``value``, a select's ``default`` options). The submission has
        the modal's shape: labels (type 18) carry their ``component``, rows their ``components``.
        """
        ack = opened.ack
        if ack is None or ack.type != 9 or not isinstance(ack.data, dict):
            raise ValueError("that interaction was not answered with a modal")
        modal = ack.data
        channel = opened.channel
        guild = self.world.guild_of(channel)
        inter, payload, _ = self._base_interaction(
            5, user or opened.user, guild, channel, opened.attachment_size_limit, None, None,
            owners=dict(opened.payload.get("authorizing_integration_owners") or {}),
        )  # fmt: skip
        payload["data"] = {
            "custom_id": modal["custom_id"],
            "components": [c for c in (_submitted(c, values or {}) for c in modal["components"]) if c],
        }
        if opened.source_message is not None:  # a modal opened from a message's component
            payload["message"] = self.world.message_json(opened.source_message)
            inter.source_message = opened.source_message
        inter.custom_id = modal["custom_id"]
        inter.opened_by = opened
        return await self._dispatch_interaction(inter)

    async def click_button(
        self,
        message: RecordedMessage | MessageEvent | int,
        custom_id: str,
        *,
        user: FakeUser,
        check: bool = True,
    ) -> FakeInteraction:
        """Click the button ``custom_id`` on ``message`` as ``user`` (component_type 2)."""
        return await self.use_component(message, custom_id, user=user, check=check)

    async def select(
        self,
        message: RecordedMessage | MessageEvent | int,
        custom_id: str,
        values: list[str],
        *,
        user: FakeUser,
        check: bool = True,
    ) -> FakeInteraction:
        """Choose ``values`` in the select menu ``custom_id`` on ``message`` as ``user``."""
        return await self.use_component(message, custom_id, user=user, values=values, check=check)

    # --- message bookkeeping (used by the REST handlers) -------------------------------------------

    def _emit(
        self, kind: EventKind, route: MessageRoute, msg: RecordedMessage, interaction_id: int | None
    ) -> None:
        self.events.append(
            MessageEvent(
                kind=kind,
                route=route,
                time=self.now(),
                message=msg,
                version=msg.versions[-1],
                interaction_id=interaction_id,
            )
        )
        self.notify()

    def _gateway_message_event(self, event: str, msg: RecordedMessage) -> None:
        if not self.config.dispatch_message_events or msg.ephemeral:
            return
        channel = self.world.channels.get(msg.channel_id)
        if channel is not None and channel.is_group_dm:  # the bot is not in it: it hears nothing
            return
        intent = INTENT_DIRECT_MESSAGES if msg.guild_id is None else INTENT_GUILD_MESSAGES
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
        else:
            data = self.world.message_json(msg, gateway=True)
        self.gateway.broadcast(event, data, guild_id=msg.guild_id, intent=intent)

    def create_message(
        self,
        channel: FakeChannel,
        route: MessageRoute,
        fields: MessageFields,
        *,
        interaction: FakeInteraction | None = None,
        msg_type: int | None = None,
        reference: dict[str, Any] | None = None,
        author: FakeUser | None = None,
    ) -> RecordedMessage:
        now = self.now()
        if msg_type is None:
            msg_type = 20 if interaction is not None and interaction.type == 2 else 0
        msg = RecordedMessage(
            id=self.world.snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=(author or self.world.bot_user).id,
            route=route,
            created_at=now,
            content=fields.content,
            embeds=fields.embeds,
            components=fields.components,
            attachments=fields.attachments,
            flags=fields.flags,
            type=msg_type,
            tts=fields.tts,
            timestamp=iso(),
            message_reference=reference,
        )
        if interaction is not None:
            msg.webhook_id = self.world.application_id
            msg.interaction_id = interaction.id
            msg.interaction_user_id = interaction.user.id
            msg.interaction_type = interaction.type
            msg.interaction_name = interaction.name if interaction.type == 2 else None
            if interaction.type == 3 and interaction.source_message is not None:
                msg.interacted_message_id = interaction.source_message.id
            opener = interaction.opened_by
            if interaction.type == 5 and opener is not None:
                shown_on = opener.source_message.id if opener.source_message is not None else None
                msg.triggering = (opener.id, opener.type, opener.user.id, shown_on)
        msg.versions.append(msg.snapshot(route, now))
        self.world.messages[msg.id] = msg
        self.world.message_order.append(msg)
        if not msg.ephemeral:
            channel.last_message_id = msg.id
        if route != "deferred":
            self._emit("create", route, msg, interaction.id if interaction else None)
        else:
            self.notify()
        self._gateway_message_event("MESSAGE_CREATE", msg)
        return msg

    def edit_message(
        self,
        msg: RecordedMessage,
        fields: MessageFields,
        route: MessageRoute,
        *,
        interaction_id: int | None,
        kind: EventKind = "edit",
        mark_edited: bool = True,
    ) -> None:
        now = self.now()
        msg.content = fields.content
        msg.embeds = fields.embeds
        msg.components = fields.components
        msg.attachments = fields.attachments
        msg.flags = fields.flags
        if mark_edited:
            msg.edited_at = now
            msg.edited_timestamp = iso()
        msg.versions.append(msg.snapshot(route, now))
        self._emit(kind, route, msg, interaction_id)
        self._gateway_message_event("MESSAGE_UPDATE", msg)

    def delete_message(
        self, msg: RecordedMessage, route: MessageRoute, *, interaction_id: int | None
    ) -> None:
        msg.deleted = True
        self._emit("delete", route, msg, interaction_id)
        self._gateway_message_event("MESSAGE_DELETE", msg)

    # --- HTTP entry point ---------------------------------------------------------------------------

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        method = request.method
        rec = RequestRecord(method=method, path=path, status=0, time=self.now(), query=request.query_string)
        try:
            if path.startswith(("/attachments/", "/media/attachments/")):
                rec.route = "GET /attachments/{channel_id}/{attachment_id}/{filename}"
                injected = await self._apply_injection(request, path, rec)
                response = injected if injected is not None else self._serve_cdn(request)
            elif path.startswith(API_PREFIX + "/"):
                response = await self._handle_api(request, path[len(API_PREFIX) :], rec)
            else:
                rec.code = 0
                response = json_response(404, {"message": "404: Not Found", "code": 0})
        except ApiError as exc:  # pragma: no cover - handlers convert their own errors
            response = json_response(exc.status, exc.body())
            rec.code = exc.code
        except Exception as exc:
            log.exception("fake discord: handler crashed for %s %s", method, path)
            rec.error = repr(exc)
            with contextlib.suppress(Exception):
                await drain(request)
            rec.code = 0
            response = json_response(500, {"message": "500: Internal Server Error (fake crashed)", "code": 0})
        rec.status = response.status
        if rec.route is None and rec.status in (404, 405):
            log.warning("fake discord: unknown route %s %s", method, path)
        self.requests.append(rec)
        self.notify()
        return response

    def _serve_cdn(self, request: web.Request) -> web.Response:
        parts = request.path.split("/")
        if parts[1] == "media":
            parts = parts[1:]
        # ["", "attachments", channel_id, attachment_id, filename]
        att = None
        if len(parts) == 5 and request.method in ("GET", "HEAD"):
            att = self.world.cdn_lookup(parts[2], parts[3], parts[4], dict(request.query))
        if att is None:
            return web.Response(
                status=404, text="This content is no longer available.", headers={"Via": "1.1 google"}
            )
        headers = {"Via": "1.1 google", "Content-Type": att.content_type or "application/octet-stream"}
        return web.Response(status=200, body=att.data, headers=headers)

    async def _apply_injection(
        self, request: web.Request, path: str, rec: RequestRecord
    ) -> web.Response | None:
        """Apply the first live injection matching the request: delay, then maybe an error answer."""
        for inj in self.injections:
            if inj.matches(request.method, path):
                inj.hits += 1
                rec.injected = True
                if inj.delay > 0:
                    await asyncio.sleep(inj.delay)
                if inj.status is None:
                    return None
                await drain(request)
                status, body, headers = inj.error()
                rec.code = body.get("code") if isinstance(body, dict) else None
                return json_response(status, body, headers)
        return None

    async def _handle_api(self, request: web.Request, sub: str, rec: RequestRecord) -> web.Response:
        method = request.method
        route, params, other_method = self.rest.match(method, sub)
        spec_route: SpecRoute | None = None
        if self.config.validate_spec:
            spec_route, spec_params, other_method = self.spec.match(method, sub)
            if spec_route is None:
                route = None  # a route the spec lacks is not Discord's: 404, as there
        if route is not None:
            rec.route = route.key
        injected = await self._apply_injection(request, sub, rec)
        if injected is not None:
            return injected
        if route is None:
            await drain(request)
            rec.code = 0
            if other_method:
                return json_response(405, {"message": "405: Method Not Allowed", "code": 0})
            return json_response(404, {"message": "404: Not Found", "code": 0})
        headers = ratelimit_headers(route.key, self.config.ratelimit_limit)
        if route.auth and request.headers.get("Authorization") != f"Bot {self.config.token}":
            await drain(request)
            rec.code = 0
            return json_response(401, {"message": "401: Unauthorized", "code": 0}, headers)
        ctx = Ctx(self, request, params, spec_route)
        try:
            if spec_route is not None:
                errors = spec_route.check_params(spec_params, request.query)
                if errors:
                    raise ApiError(400, Code.INVALID_FORM_BODY, errors=errors_tree(errors))
            status, data = await route.handler(ctx)
        except ApiError as exc:
            rec.code = exc.code
            status, data = exc.status, exc.body()
            if exc.status == 400 and exc.code in FORM_ERROR_CODES:
                self._violation("request", rec, status, spec_route, _flatten(exc))
            elif not ctx.body_read:
                unread = await ctx.unread_body_errors()
                if unread:
                    self._violation("request", rec, status, spec_route, unread)
        else:
            if not ctx.body_read:
                unread = await ctx.unread_body_errors()
                if unread:
                    self._violation("request", rec, status, spec_route, unread)
        await drain(request)
        if spec_route is not None:
            wrong = spec_route.check_response(status, data)
            if wrong:
                self._violation("response", rec, status, spec_route, wrong)
        return json_response(status, data, headers)


def _flatten(exc: ApiError) -> list[FieldError]:
    """The fields a 50035 answer names (its ``errors`` tree), for the violation record."""
    out: list[FieldError] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if not isinstance(node, dict):
            return
        for err in node.get("_errors", []):
            out.append(FieldError(path, str(err.get("code")), str(err.get("message"))))
        for key, child in node.items():
            if key != "_errors":
                walk(child, (*path, key))

    walk(exc.errors or {}, ())
    return out or [FieldError((), str(exc.code), exc.message)]


def _submitted(component: dict[str, Any], values: Mapping[str, str | list[str]]) -> dict[str, Any] | None:
    """One modal component as its submission carries it (None: nothing to submit, e.g. text)."""
    kind = int(component.get("type", 0))
    if kind == 1:  # an action row (the legacy layout): its inputs
        inner = [c for c in (_submitted(c, values) for c in component.get("components", [])) if c]
        return {"type": 1, "components": inner}
    if kind == 18:  # a label: its one component
        inner_one = _submitted(component["component"], values)
        if inner_one is None:
            return None
        label = {"type": 18, "component": inner_one}
        if "id" in component:
            label["id"] = component["id"]
        return label
    custom_id = component.get("custom_id")
    if custom_id is None:
        return None
    if kind == 4:  # a text input
        given = values.get(custom_id, component.get("value", ""))
        return {"type": 4, "custom_id": custom_id, "value": given if isinstance(given, str) else given[0]}
    if kind in (3, 5, 6, 7, 8):  # selects
        chosen = values.get(custom_id)
        if chosen is None:
            chosen = [o["value"] for o in component.get("options", []) if o.get("default")]
        return {
            "type": kind,
            "custom_id": custom_id,
            "values": [chosen] if isinstance(chosen, str) else list(chosen),
        }
    return None
