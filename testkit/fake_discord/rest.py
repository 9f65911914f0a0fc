"""The REST routes of the fake (everything under ``/api/v10``)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import ApiError, Code, forbidden, form_error, not_found
from .http_util import Body, read_body, too_large
from .models import (
    FakeChannel,
    FakeGuild,
    InteractionCallback,
    MessageRoute,
    Perm,
    RecordedAttachment,
    RecordedMessage,
)
from .spec import FieldError, SpecRoute, errors_tree
from .validation import (
    ensure_not_empty,
    validate_command,
    validate_commands,
    validate_files_count,
    validate_message_fields,
)

if TYPE_CHECKING:
    from .interactions import FakeInteraction
    from .server import FakeDiscord

Reply = tuple[int, Any]
Handler = Callable[["Ctx"], Awaitable[Reply]]

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
COMPONENTS_V2 = 1 << 15
CHANNEL_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2
INTERACTION_FLAGS = CHANNEL_FLAGS | EPHEMERAL
TRUE_VALUES = ("1", "true", "True")


@dataclass
class RouteDef:
    method: str
    template: str
    handler: Handler
    auth: bool
    regex: re.Pattern[str]

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


class Ctx:
    """One request being handled: params from the path, lazily parsed body."""

    def __init__(
        self,
        fake: FakeDiscord,
        request: web.Request,
        params: dict[str, str],
        spec_route: SpecRoute | None = None,
    ) -> None:
        self.fake = fake
        self.request = request
        self.params = params
        self.spec_route = spec_route
        self._body: Body | None = None

    async def body(self) -> Body:
        """The parsed body, held to the route's request schema when first read (so each handler's
        own order of checks, e.g. 404 for an unknown channel first, stays as it was)."""
        if self._body is None:
            self._body = await read_body(self.request, self.fake.config.max_request_size)
            errors = self.body_errors()
            if errors:
                raise ApiError(400, Code.INVALID_FORM_BODY, errors=errors_tree(errors))
        return self._body

    def body_errors(self) -> list[FieldError]:
        if self.spec_route is None or self._body is None:
            return []
        return self.spec_route.check_body(self._body.json)

    async def unread_body_errors(self) -> list[FieldError]:
        """A body the handler answered without reading (an error first): still held to the
        schema, so a bad body sent to a missing channel is noticed too; the answer stays."""
        if self.spec_route is None or self.spec_route.body_schema() is None:
            return []
        try:
            self._body = await read_body(self.request, self.fake.config.max_request_size)
        except ApiError:
            return []
        return self.body_errors()

    async def json_object(self) -> dict[str, Any]:
        data = (await self.body()).json
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise form_error("_", "Must be an object.", "MODEL_TYPE_CONVERT")
        return data

    @property
    def body_read(self) -> bool:
        return self._body is not None

    def snowflake(self, name: str, code: int) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise not_found(code) from None


@dataclass
class MessageFields:
    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: list[RecordedAttachment]
    flags: int
    tts: bool
    new_files: list[RecordedAttachment]


def _number_components(components: list[Any], counter: list[int]) -> list[dict[str, Any]]:
    out = []
    for c in components:
        if not isinstance(c, dict):
            continue
        c = dict(c)
        if "id" not in c:
            counter[0] += 1
            c["id"] = counter[0]
        if isinstance(c.get("components"), list):
            c["components"] = _number_components(c["components"], counter)
        if isinstance(c.get("accessory"), dict):
            c["accessory"] = _number_components([c["accessory"]], counter)[0]
        out.append(c)
    return out


def _normalize_embeds(embeds: Any) -> list[dict[str, Any]]:
    return [{**e, "type": e.get("type", "rich")} for e in embeds or [] if isinstance(e, dict)]


class RestApi:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.world = fake.world
        self.routes: list[RouteDef] = []
        r = self._add
        # login / gateway discovery
        r("GET", "/users/@me", self.get_me)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        r("GET", "/gateway", self.get_gateway, auth=False)
        r("GET", "/gateway/bot", self.get_gateway_bot)
        # users / DMs
        r("POST", "/users/@me/channels", self.open_dm)
        r("GET", "/users/{user_id}", self.get_user)
        # application commands
        for prefix in (
            "/applications/{application_id}",
            "/applications/{application_id}/guilds/{guild_id}",
        ):
            r("GET", prefix + "/commands", self.list_commands)
            r("PUT", prefix + "/commands", self.overwrite_commands)
            r("POST", prefix + "/commands", self.upsert_command)
            r("GET", prefix + "/commands/{command_id}", self.get_command)
            r("PATCH", prefix + "/commands/{command_id}", self.edit_command)
            r("DELETE", prefix + "/commands/{command_id}", self.delete_command)
        # guilds
        r("GET", "/guilds/{guild_id}", self.get_guild)
        r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self.get_guild_roles)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_guild_member)
        # channels / messages
        r("GET", "/channels/{channel_id}", self.get_channel)
        r("GET", "/channels/{channel_id}/messages", self.list_messages)
        r("POST", "/channels/{channel_id}/messages", self.post_message)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_channel_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_channel_message)
        r("POST", "/channels/{channel_id}/typing", self.typing)
        # interactions / webhooks (authenticated by the interaction token, not the bot token)
        r("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback, auth=False)
        r("POST", "/webhooks/{application_id}/{token}", self.execute_webhook, auth=False)
        for verb, handler in (
            ("GET", self.get_webhook_message),
            ("PATCH", self.edit_webhook_message),
            ("DELETE", self.delete_webhook_message),
        ):
            r(verb, "/webhooks/{application_id}/{token}/messages/{message_id}", handler, auth=False)

    def _add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        parts = re.split(r"(\{[a-z_]+\})", template)
        rx = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
        self.routes.append(RouteDef(method, template, handler, auth, re.compile(f"^{rx}$")))

    def match(self, method: str, path: str) -> tuple[RouteDef | None, dict[str, str], bool]:
        """(route, params, path_known_for_another_method)."""
        other = False
        # Literal segments (@me, @original) must win over placeholders: try exact-literal routes first.
        candidates = sorted(self.routes, key=lambda rd: rd.template.count("{"))
        for rd in candidates:
            m = rd.regex.match(path)
            if m is None:
                continue
            if rd.method != method:
                other = True
                continue
            return rd, m.groupdict(), False
        return None, {}, other

    # --- shared helpers -------------------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self.fake.config

    def _check_app(self, ctx: Ctx, *, code: int = Code.MISSING_ACCESS, status: int = 403) -> None:
        if ctx.params.get("application_id") != str(self.world.application_id):
            raise ApiError(status, code)

    def _guild(self, ctx: Ctx) -> FakeGuild:
        gid = ctx.snowflake("guild_id", Code.UNKNOWN_GUILD)
        guild = self.world.guilds.get(gid)
        if guild is None or guild.deleted:
            raise not_found(Code.UNKNOWN_GUILD)
        if not guild.has_bot:  # a guild the bot is not in: Discord's Missing Access
            raise forbidden(Code.MISSING_ACCESS)
        return guild

    def _channel(self, ctx: Ctx, *, need_view: bool = True) -> FakeChannel:
        cid = ctx.snowflake("channel_id", Code.UNKNOWN_CHANNEL)
        chan = self.world.channels.get(cid)
        if chan is None or chan.deleted:
            raise not_found(Code.UNKNOWN_CHANNEL)
        if chan.is_group_dm:  # the bot is never a recipient of one
            raise forbidden(Code.MISSING_ACCESS)
        if not chan.is_dm:
            guild = self.world.guild_of(chan)
            if guild is None or guild.deleted:
                raise not_found(Code.UNKNOWN_CHANNEL)
            if not guild.has_bot:  # a channel of a guild the bot is not in: Missing Access
                raise forbidden(Code.MISSING_ACCESS)
            if need_view and not self.world.bot_permissions(chan) & Perm.VIEW_CHANNEL:
                raise forbidden(Code.MISSING_ACCESS)
        return chan

    def _channel_message(self, ctx: Ctx, chan: FakeChannel) -> RecordedMessage:
        mid = ctx.snowflake("message_id", Code.UNKNOWN_MESSAGE)
        msg = self.world.messages.get(mid)
        if msg is None or msg.deleted or msg.channel_id != chan.id or msg.ephemeral:
            raise not_found(Code.UNKNOWN_MESSAGE)
        return msg

    def message_fields(
        self,
        payload: dict[str, Any],
        body: Body,
        *,
        limit: int,
        channel_id: int,
        existing: RecordedMessage | None,
        ephemeral: bool,
        allowed_flags: int,
    ) -> MessageFields:
        """Validates a create/edit body and stores its files; Discord's limits apply (413 / 400)."""
        for up in body.uploads:
            if len(up.data) > limit:
                raise too_large()
        validate_files_count(len(body.uploads))
        validate_message_fields(payload)
        entries = [a for a in payload.get("attachments") or [] if isinstance(a, dict)]
        meta = {str(a.get("id")): a for a in entries}
        new: dict[int, RecordedAttachment] = {}
        for up in body.uploads:
            entry = meta.get(str(up.index), {})
            new[up.index] = self.world.store_file(
                channel_id,
                str(entry.get("filename") or up.filename),
                up.data,
                up.content_type,
                description=entry.get("description"),
                ephemeral=ephemeral,
            )
        if payload.get("attachments") is not None:
            atts: list[RecordedAttachment] = []
            used: set[int] = set()
            old = {str(a.id): a for a in existing.attachments} if existing else {}
            for i, entry in enumerate(entries):
                key = str(entry.get("id"))
                if key in old:
                    atts.append(old[key])
                elif key.isdigit() and int(key) in new:
                    atts.append(new[int(key)])
                    used.add(int(key))
                else:
                    raise form_error(f"attachments.{i}.id", "Unknown attachment", "ATTACHMENT_NOT_FOUND")
            atts.extend(a for i, a in new.items() if i not in used)
        else:
            atts = (list(existing.attachments) if existing else []) + list(new.values())
        validate_files_count(len(atts))

        if "content" in payload:
            content = str(payload["content"] or "")
        else:
            content = existing.content if existing else ""
        embeds = (
            _normalize_embeds(payload["embeds"])
            if "embeds" in payload
            else (list(existing.embeds) if existing else [])
        )
        counter = [0]
        if "components" in payload:
            components = _number_components(payload["components"] or [], counter)
        else:
            components = list(existing.components) if existing else []
        requested = int(payload.get("flags") or 0) if "flags" in payload else None
        if existing is None:
            flags = (requested or 0) & allowed_flags
        else:
            flags = existing.flags
            if requested is not None:
                flags = (
                    (flags & ~SUPPRESS_EMBEDS) | (requested & SUPPRESS_EMBEDS) | (requested & COMPONENTS_V2)
                )
        extra = bool(payload.get("sticker_ids") or payload.get("poll"))
        ensure_not_empty(content, embeds, components, len(atts), extra)
        return MessageFields(
            content=content,
            embeds=embeds,
            components=components,
            attachments=atts,
            flags=flags,
            tts=bool(payload.get("tts")),
            new_files=list(new.values()),
        )

    # --- login / gateway ----------------------------------------------------------------------

    async def get_me(self, ctx: Ctx) -> Reply:
        return 200, self.world.client_user_json()

    async def get_application(self, ctx: Ctx) -> Reply:
        return 200, self.world.application_json()

    async def get_gateway(self, ctx: Ctx) -> Reply:
        return 200, {"url": self.fake.gateway_url}

    async def get_gateway_bot(self, ctx: Ctx) -> Reply:
        return 200, {
            "url": self.fake.gateway_url,
            "shards": self.fake.config.shard_count,
            "session_start_limit": self.fake.gateway.session_start_limit(),
        }

    # --- users --------------------------------------------------------------------------------

    async def get_user(self, ctx: Ctx) -> Reply:
        user = self.world.users.get(ctx.snowflake("user_id", Code.UNKNOWN_USER))
        if user is None:
            raise not_found(Code.UNKNOWN_USER)
        return 200, self.world.user_json(user)

    async def open_dm(self, ctx: Ctx) -> Reply:
        payload = await ctx.json_object()
        try:
            uid = int(payload.get("recipient_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise form_error("recipient_id", 'Value "None" is not snowflake.', "NUMBER_TYPE_COERCE") from None
        user = self.world.users.get(uid)
        if user is None:
            raise not_found(Code.UNKNOWN_USER)
        return 200, self.world.channel_json(self.world.dm_channel_for(user))

    # --- application commands ------------------------------------------------------------------

    def _command_scope(self, ctx: Ctx) -> tuple[int | None, list[dict[str, Any]]]:
        self._check_app(ctx)
        if "guild_id" not in ctx.params:
            return None, self.world.global_commands
        guild = self._guild(ctx)
        return guild.id, self.world.guild_commands.setdefault(guild.id, [])

    def _store_command(self, raw: dict[str, Any], guild_id: int | None) -> dict[str, Any]:
        ctype = int(raw.get("type", 1))
        perms = raw.get("default_member_permissions")
        key = (guild_id, ctype, str(raw["name"]))
        cid = self.world._command_ids.setdefault(key, self.world.snowflake())
        cmd: dict[str, Any] = {
            "id": str(cid),
            "application_id": str(self.world.application_id),
            "version": str(self.world.snowflake()),
            "type": ctype,
            "name": raw["name"],
            "name_localizations": raw.get("name_localizations"),
            "description": raw.get("description", ""),
            "description_localizations": raw.get("description_localizations"),
            # a permission bit set goes out as a decimal string, whatever form it came in
            "default_member_permissions": None if perms is None else str(perms),
            "dm_permission": raw.get("dm_permission", True),
            "nsfw": bool(raw.get("nsfw", False)),
        }
        if raw.get("options"):
            cmd["options"] = raw["options"]
        if guild_id is not None:
            cmd["guild_id"] = str(guild_id)
        else:
            cmd["contexts"] = raw.get("contexts")
            cmd["integration_types"] = raw.get("integration_types") or [0]
        return cmd

    def _find_command(self, commands: list[dict[str, Any]], ctx: Ctx) -> dict[str, Any]:
        for cmd in commands:
            if cmd["id"] == ctx.params["command_id"]:
                return cmd
        raise not_found(Code.UNKNOWN_APPLICATION_COMMAND)

    async def list_commands(self, ctx: Ctx) -> Reply:
        _, commands = self._command_scope(ctx)
        return 200, commands

    async def overwrite_commands(self, ctx: Ctx) -> Reply:
        guild_id, commands = self._command_scope(ctx)
        body = (await ctx.body()).json
        validate_commands(body)
        stored = [self._store_command(c, guild_id) for c in body]
        commands[:] = stored
        self.fake.notify()
        return 200, stored

    async def upsert_command(self, ctx: Ctx) -> Reply:
        guild_id, commands = self._command_scope(ctx)
        raw = await ctx.json_object()
        validate_command(raw)
        cmd = self._store_command(raw, guild_id)
        for i, old in enumerate(commands):
            if old["id"] == cmd["id"]:
                commands[i] = cmd
                self.fake.notify()
                return 200, cmd
        commands.append(cmd)
        self.fake.notify()
        return 201, cmd

    async def get_command(self, ctx: Ctx) -> Reply:
        _, commands = self._command_scope(ctx)
        return 200, self._find_command(commands, ctx)

    async def edit_command(self, ctx: Ctx) -> Reply:
        guild_id, commands = self._command_scope(ctx)
        old = self._find_command(commands, ctx)
        raw = {**old, **(await ctx.json_object())}
        validate_command(raw)
        cmd = self._store_command(raw, guild_id)
        cmd["id"] = old["id"]
        commands[commands.index(old)] = cmd
        self.fake.notify()
        return 200, cmd

    async def delete_command(self, ctx: Ctx) -> Reply:
        _, commands = self._command_scope(ctx)
        commands.remove(self._find_command(commands, ctx))
        self.fake.notify()
        return 204, None

    # --- guilds -------------------------------------------------------------------------------

    async def get_guild(self, ctx: Ctx) -> Reply:
        guild = self._guild(ctx)
        data = self.world.guild_json(guild)
        if ctx.request.query.get("with_counts") in TRUE_VALUES:
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return 200, data

    async def get_guild_channels(self, ctx: Ctx) -> Reply:
        guild = self._guild(ctx)
        return 200, [self.world.channel_json(c) for c in guild.channels.values() if not c.deleted]

    async def get_guild_roles(self, ctx: Ctx) -> Reply:
        guild = self._guild(ctx)
        return 200, [self.world.role_json(r) for r in guild.roles.values()]

    async def get_guild_member(self, ctx: Ctx) -> Reply:
        guild = self._guild(ctx)
        member = guild.members.get(ctx.snowflake("user_id", Code.UNKNOWN_MEMBER))
        if member is None:
            raise not_found(Code.UNKNOWN_MEMBER)
        return 200, self.world.member_json(member)

    # --- channels -----------------------------------------------------------------------------

    async def get_channel(self, ctx: Ctx) -> Reply:
        return 200, self.world.channel_json(self._channel(ctx))

    async def typing(self, ctx: Ctx) -> Reply:
        chan = self._channel(ctx)
        if not chan.is_dm and not self.world.bot_permissions(chan) & Perm.SEND_MESSAGES:
            raise forbidden(Code.MISSING_PERMISSIONS)
        return 204, None

    async def list_messages(self, ctx: Ctx) -> Reply:
        chan = self._channel(ctx)
        if not chan.is_dm and not self.world.bot_permissions(chan) & Perm.READ_MESSAGE_HISTORY:
            return 200, []
        q = ctx.request.query
        limit = max(1, min(100, int(q.get("limit", "50"))))
        msgs = [
            m
            for m in self.world.message_order
            if m.channel_id == chan.id and not m.deleted and not m.ephemeral
        ]
        if "before" in q:
            msgs = [m for m in msgs if m.id < int(q["before"])]
        if "after" in q:
            msgs = [m for m in msgs if m.id > int(q["after"])]
            msgs = msgs[:limit]
        msgs = sorted(msgs, key=lambda m: m.id, reverse=True)[:limit]
        return 200, [self.world.message_json(m) for m in msgs]

    async def post_message(self, ctx: Ctx) -> Reply:
        chan = self._channel(ctx)
        body = await ctx.body()
        if chan.is_dm:
            assert chan.recipient is not None
            if not chan.recipient.accepts_dms:
                raise forbidden(Code.CANNOT_DM_USER)
            limit = self.config.dm_filesize_limit
            route: MessageRoute = "dm_post"
        else:
            perms = self.world.bot_permissions(chan)
            if not perms & Perm.SEND_MESSAGES or (body.uploads and not perms & Perm.ATTACH_FILES):
                raise forbidden(Code.MISSING_PERMISSIONS)
            guild = self.world.guild_of(chan)
            assert guild is not None
            limit = guild.filesize_limit
            route = "channel_post"
        payload = await ctx.json_object()
        fields = self.message_fields(
            payload,
            body,
            limit=limit,
            channel_id=chan.id,
            existing=None,
            ephemeral=False,
            allowed_flags=CHANNEL_FLAGS,
        )
        reference = None
        msg_type = 0
        ref = payload.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id"):
            target = self.world.messages.get(int(ref["message_id"]))
            if target is None or target.deleted:
                if ref.get("fail_if_not_exists", True):
                    raise form_error(
                        "message_reference", "Unknown message", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
                    )
            else:
                reference = {"type": 0, "message_id": str(target.id), "channel_id": str(target.channel_id)}
                if target.guild_id is not None:
                    reference["guild_id"] = str(target.guild_id)
                msg_type = 19
        msg = self.fake.create_message(chan, route, fields, msg_type=msg_type, reference=reference)
        return 200, self.world.message_json(msg)

    async def get_message(self, ctx: Ctx) -> Reply:
        chan = self._channel(ctx)
        if not chan.is_dm and not self.world.bot_permissions(chan) & Perm.READ_MESSAGE_HISTORY:
            raise forbidden(Code.MISSING_ACCESS)
        return 200, self.world.message_json(self._channel_message(ctx, chan))

    async def edit_channel_message(self, ctx: Ctx) -> Reply:
        chan = self._channel(ctx)
        msg = self._channel_message(ctx, chan)
        if msg.author_id != self.world.bot_user.id:
            raise forbidden(Code.CANNOT_EDIT_OTHERS_MESSAGE)
        body = await ctx.body()
        if chan.is_dm:
            limit = self.config.dm_filesize_limit
        else:
            if body.uploads and not self.world.bot_permissions(chan) & Perm.ATTACH_FILES:
                raise forbidden(Code.MISSING_PERMISSIONS)
            guild = self.world.guild_of(chan)
            assert guild is not None
            limit = guild.filesize_limit
        payload = await ctx.json_object()
        fields = self.message_fields(
            payload,
            body,
            limit=limit,
            channel_id=chan.id,
            existing=msg,
            ephemeral=False,
            allowed_flags=CHANNEL_FLAGS,
        )
        self.fake.edit_message(msg, fields, "channel_edit", interaction_id=None)
        return 200, self.world.message_json(msg)

    async def delete_channel_message(self, ctx: Ctx) -> Reply:
        chan = self._channel(ctx)
        msg = self._channel_message(ctx, chan)
        if msg.author_id != self.world.bot_user.id and not (
            not chan.is_dm and self.world.bot_permissions(chan) & Perm.MANAGE_MESSAGES
        ):
            raise forbidden(Code.MISSING_PERMISSIONS)
        self.fake.delete_message(msg, "channel_delete", interaction_id=None)
        return 204, None

    # --- interactions -------------------------------------------------------------------------

    async def interaction_callback(self, ctx: Ctx) -> Reply:
        fake = self.fake
        inter = fake.interactions_by_id.get(ctx.snowflake("interaction_id", Code.UNKNOWN_INTERACTION))
        if inter is None or inter.token != ctx.params["token"]:
            raise not_found(Code.UNKNOWN_INTERACTION)
        body = await ctx.body()
        now = fake.now()
        latency = now - (inter.dispatched_at if inter.dispatched_at is not None else inter.created_at)
        payload = body.json if isinstance(body.json, dict) else {}
        try:
            cb_type = int(payload.get("type"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            cb_type = -1
        data = payload.get("data") if isinstance(payload.get("data"), dict) else None

        def attempt(
            status: int, code: int | None, files: list[RecordedAttachment] | None = None
        ) -> InteractionCallback:
            cb = InteractionCallback(
                type=cb_type,
                data=data,
                time=now,
                latency=latency,
                status=status,
                code=code,
                files=files or [],
            )
            inter.callbacks.append(cb)
            fake.notify()
            return cb

        if inter.ack is not None:
            attempt(400, Code.INTERACTION_ALREADY_ACKNOWLEDGED)
            raise ApiError(400, Code.INTERACTION_ALREADY_ACKNOWLEDGED)
        if now > inter.ack_deadline:
            attempt(404, Code.UNKNOWN_INTERACTION)
            raise not_found(Code.UNKNOWN_INTERACTION)
        allowed = {4, 5, 9} if inter.type == 2 else {4, 5, 6, 7, 9}
        if cb_type not in allowed:
            attempt(400, Code.INVALID_FORM_BODY)
            raise form_error("type", f"Interaction callback type {cb_type} is not valid for this interaction")
        try:
            resource_message: RecordedMessage | None = None
            files: list[RecordedAttachment] = []
            if cb_type in (4, 5) and inter.channel.deleted:
                raise not_found(Code.UNKNOWN_CHANNEL)
            if cb_type == 4:
                flags_req = int((data or {}).get("flags") or 0)
                fields = self.message_fields(
                    data or {},
                    body,
                    limit=inter.attachment_size_limit,
                    channel_id=inter.channel.id,
                    existing=None,
                    ephemeral=bool(flags_req & EPHEMERAL),
                    allowed_flags=INTERACTION_FLAGS,
                )
                files = fields.new_files
                resource_message = fake.create_message(
                    inter.channel, "interaction_response", fields, interaction=inter
                )
                inter.original_message_id = resource_message.id
            elif cb_type == 5:
                flags = (int((data or {}).get("flags") or 0) & EPHEMERAL) | LOADING
                fields = MessageFields("", [], [], [], flags, False, [])
                resource_message = fake.create_message(inter.channel, "deferred", fields, interaction=inter)
                inter.original_message_id = resource_message.id
            elif cb_type in (6, 7):
                source = inter.source_message
                if source is None or source.deleted:
                    raise not_found(Code.UNKNOWN_MESSAGE)
                if cb_type == 7:
                    fields = self.message_fields(
                        data or {},
                        body,
                        limit=inter.attachment_size_limit,
                        channel_id=source.channel_id,
                        existing=source,
                        ephemeral=source.ephemeral,
                        allowed_flags=INTERACTION_FLAGS,
                    )
                    files = fields.new_files
                    fake.edit_message(source, fields, "interaction_update", interaction_id=inter.id)
                resource_message = source
                inter.original_message_id = source.id
            elif cb_type == 9 and (
                not data or not data.get("custom_id") or not data.get("title") or not data.get("components")
            ):
                raise form_error("data", "Modals need custom_id, title and components", "BASE_TYPE_REQUIRED")
        except ApiError as exc:
            attempt(exc.status, exc.code)
            if exc.errors and cb_type in (4, 7):
                exc.errors = {"data": exc.errors}  # the message is the callback's ``data``
            raise
        inter.ack = attempt(200, None, files)
        if ctx.request.query.get("with_response") not in TRUE_VALUES:
            return 204, None
        info: dict[str, Any] = {"id": str(inter.id), "type": inter.type}
        answer: dict[str, Any] = {"interaction": info}
        if resource_message is not None:
            info["response_message_id"] = str(resource_message.id)
            info["response_message_loading"] = resource_message.loading
            info["response_message_ephemeral"] = resource_message.ephemeral
            if cb_type in (4, 7):
                # Discord's spec has a resource only for a message the callback created or
                # updated (4, 7): a defer (5, 6) answers with the interaction alone.
                answer["resource"] = {"type": cb_type, "message": self.world.message_json(resource_message)}
        return 200, answer

    def _webhook_interaction(self, ctx: Ctx) -> FakeInteraction:
        self._check_app(ctx, code=Code.UNKNOWN_WEBHOOK, status=404)
        inter = self.fake.interactions_by_token.get(ctx.params["token"])
        if inter is None or inter.token_expired:
            raise ApiError(401, Code.INVALID_WEBHOOK_TOKEN)
        if inter.ack is None:
            raise not_found(Code.UNKNOWN_WEBHOOK)
        return inter

    def _webhook_message(self, ctx: Ctx, inter: FakeInteraction) -> RecordedMessage:
        raw = ctx.params["message_id"]
        if raw == "@original":
            msg = inter.original_message
        else:
            mid = ctx.snowflake("message_id", Code.UNKNOWN_MESSAGE)
            msg = (
                self.world.messages.get(mid)
                if (mid in inter.followup_ids or mid == inter.original_message_id)
                else None
            )
        if msg is None or msg.deleted:
            raise not_found(Code.UNKNOWN_MESSAGE)
        return msg

    async def execute_webhook(self, ctx: Ctx) -> Reply:
        inter = self._webhook_interaction(ctx)
        if inter.channel.deleted:
            raise not_found(Code.UNKNOWN_CHANNEL)
        body = await ctx.body()
        payload = await ctx.json_object()
        orig = inter.original_message
        fake = self.fake
        assert inter.ack is not None
        if inter.ack.type == 5 and orig is not None and orig.loading and not orig.deleted:
            # After a defer, the first follow-up fills the "thinking" message; the defer's
            # ephemeral flag wins over the follow-up's.
            fields = self.message_fields(
                payload,
                body,
                limit=inter.attachment_size_limit,
                channel_id=orig.channel_id,
                existing=None,
                ephemeral=orig.ephemeral,
                allowed_flags=INTERACTION_FLAGS,
            )
            fields.flags = (orig.flags & EPHEMERAL) | (fields.flags & ~(EPHEMERAL | LOADING))
            fake.edit_message(
                orig, fields, "followup", interaction_id=inter.id, kind="create", mark_edited=False
            )
            msg = orig
        else:
            flags_req = int(payload.get("flags") or 0)
            fields = self.message_fields(
                payload,
                body,
                limit=inter.attachment_size_limit,
                channel_id=inter.channel.id,
                existing=None,
                ephemeral=bool(flags_req & EPHEMERAL),
                allowed_flags=INTERACTION_FLAGS,
            )
            msg = fake.create_message(inter.channel, "followup", fields, interaction=inter)
        if msg.id not in inter.followup_ids:
            inter.followup_ids.append(msg.id)
        if ctx.request.query.get("wait") in TRUE_VALUES:
            return 200, self.world.message_json(msg)
        return 204, None

    async def get_webhook_message(self, ctx: Ctx) -> Reply:
        inter = self._webhook_interaction(ctx)
        return 200, self.world.message_json(self._webhook_message(ctx, inter))

    async def edit_webhook_message(self, ctx: Ctx) -> Reply:
        inter = self._webhook_interaction(ctx)
        msg = self._webhook_message(ctx, inter)
        body = await ctx.body()
        payload = await ctx.json_object()
        fields = self.message_fields(
            payload,
            body,
            limit=inter.attachment_size_limit,
            channel_id=msg.channel_id,
            existing=msg,
            ephemeral=msg.ephemeral,
            allowed_flags=INTERACTION_FLAGS,
        )
        was_loading = msg.loading
        fields.flags &= ~LOADING
        route: MessageRoute = "original_edit" if ctx.params["message_id"] == "@original" else "followup_edit"
        self.fake.edit_message(msg, fields, route, interaction_id=inter.id, mark_edited=not was_loading)
        return 200, self.world.message_json(msg)

    async def delete_webhook_message(self, ctx: Ctx) -> Reply:
        inter = self._webhook_interaction(ctx)
        msg = self._webhook_message(ctx, inter)
        self.fake.delete_message(msg, "webhook_delete", interaction_id=inter.id)
        return 204, None
