"""The fake's model of Discord: entities, permissions, the CDN store, and JSON as Discord sends it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .config import FakeConfig, MiB
from .models import (
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    Overwrite,
    Perm,
    RecordedAttachment,
    RecordedMessage,
    SnowflakeFactory,
)


def iso(ts: float | None = None) -> str:
    """An ISO-8601 timestamp the way Discord writes them."""
    when = dt.datetime.fromtimestamp(time.time() if ts is None else ts, tz=dt.UTC)
    return when.isoformat(timespec="microseconds")


def tier_for_limit(limit: int) -> int:
    """The premium tier whose upload limit discord.py's ``Guild.filesize_limit`` reports for ``limit``."""
    if limit >= 100 * MiB:
        return 3
    if limit >= 50 * MiB:
        return 2
    return 0


def sanitize_filename(name: str) -> str:
    """Discord replaces spaces (and a few other characters) in uploaded file names."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"\s+", "_", name.strip())
    name = re.sub(r"[^\w.\-]", "", name)
    return name or "unknown"


def guess_content_type(filename: str, declared: str | None) -> str | None:
    guessed, _ = mimetypes.guess_type(filename)
    ctype = guessed or (declared if declared and declared != "application/octet-stream" else None)
    if ctype and ctype.startswith("text/") and "charset" not in ctype:
        ctype += "; charset=utf-8"
    return ctype


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) of an image, if Pillow can read it; (None, None) otherwise."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception:
        return None, None


@dataclass
class StoredFile:
    attachment: RecordedAttachment
    channel_id: int
    expires_at: float
    signature: str


class World:
    """All entities of the fake and their Discord JSON representations."""

    def __init__(self, config: FakeConfig, now: Callable[[], float]) -> None:
        self.config = config
        self.now = now
        self.snowflake = SnowflakeFactory()
        self.cdn_base = "http://127.0.0.1:0"
        self._cdn_secret = secrets.token_bytes(16)

        self.bot_user = FakeUser(
            id=self.snowflake(), username=config.bot_username, bot=True, discriminator="4821"
        )
        self.application_id = self.snowflake() if config.distinct_application_id else self.bot_user.id
        self.owner = FakeUser(id=self.snowflake(), username="app-owner")
        self.verify_key = secrets.token_hex(32)

        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.dm_by_user: dict[int, FakeChannel] = {}
        self.files: dict[int, StoredFile] = {}
        self.messages: dict[int, RecordedMessage] = {}
        self.message_order: list[RecordedMessage] = []
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, int, str], int] = {}

    # --- entities -----------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        *,
        global_name: str | None = None,
        accepts_dms: bool = True,
        bot: bool = False,
        locale: str | None = None,
    ) -> FakeUser:
        user = FakeUser(
            id=self.snowflake(),
            username=username,
            global_name=global_name,
            bot=bot,
            accepts_dms=accepts_dms,
            locale=locale or self.config.locale,
        )
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        filesize_limit: int | None = None,
        premium_tier: int | None = None,
        owner: FakeUser | None = None,
        bot_permissions: int = Perm.BOT_DEFAULT,
        everyone_permissions: int = Perm.EVERYONE_DEFAULT,
        locale: str | None = None,
        shard: int | None = None,
        with_bot: bool = True,
    ) -> FakeGuild:
        limit = self.config.guild_filesize_limit if filesize_limit is None else filesize_limit
        owner = owner or self.owner
        guild = FakeGuild(
            id=self.snowflake() if shard is None else self.snowflake.on_shard(shard, self.config.shard_count),
            name=name,
            owner_id=owner.id,
            filesize_limit=limit,
            premium_tier=tier_for_limit(limit) if premium_tier is None else premium_tier,
            locale=locale or self.config.locale,
        )
        guild.roles[guild.id] = FakeRole(
            id=guild.id, guild_id=guild.id, name="@everyone", permissions=everyone_permissions, position=0
        )
        self.guilds[guild.id] = guild
        guild.has_bot = with_bot
        if with_bot:  # else no bot member, no bot role: the app is here only through user installs
            self._add_bot(guild, bot_permissions)
        if owner.id not in guild.members:
            guild.members[owner.id] = FakeMember(user=owner, guild_id=guild.id, joined_at=iso())
        return guild

    def _add_bot(self, guild: FakeGuild, bot_permissions: int) -> None:
        bot_role = FakeRole(
            id=self.snowflake(),
            guild_id=guild.id,
            name=self.bot_user.username,
            permissions=bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.bot_role_id = bot_role.id
        guild.members[self.bot_user.id] = FakeMember(
            user=self.bot_user, guild_id=guild.id, roles=[bot_role.id], joined_at=iso()
        )

    def add_role(self, guild: FakeGuild, name: str, *, permissions: int = 0) -> FakeRole:
        role = FakeRole(
            id=self.snowflake(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=len(guild.roles),
        )
        guild.roles[role.id] = role
        return role

    def role_with(self, guild: FakeGuild, name: str, permissions: int) -> FakeRole:
        """A role of ``guild`` named ``name`` with ``permissions`` (created once)."""
        for role in guild.roles.values():
            if role.name == name and role.permissions == permissions:
                return role
        return self.add_role(guild, name, permissions=permissions)

    def add_text_channel(
        self,
        guild: FakeGuild,
        name: str,
        *,
        bot_can_send: bool = True,
        bot_can_attach: bool = True,
        bot_can_view: bool = True,
        topic: str | None = None,
    ) -> FakeChannel:
        chan = FakeChannel(
            id=self.snowflake(),
            type=0,
            guild_id=guild.id,
            name=name,
            position=len(guild.channels),
            topic=topic,
        )
        guild.channels[chan.id] = chan
        self.channels[chan.id] = chan
        self.set_bot_overwrite(chan, send=bot_can_send, attach=bot_can_attach, view=bot_can_view)
        return chan

    def set_bot_overwrite(
        self,
        chan: FakeChannel,
        *,
        send: bool | None = None,
        attach: bool | None = None,
        view: bool | None = None,
    ) -> None:
        """Allow/deny the bot member's permissions in ``chan`` through a member overwrite."""
        ow = chan.overwrites.get(self.bot_user.id) or Overwrite(id=self.bot_user.id, type=1)
        for flag, bit in ((send, Perm.SEND_MESSAGES), (attach, Perm.ATTACH_FILES), (view, Perm.VIEW_CHANNEL)):
            if flag is None:
                continue
            if flag:
                ow.deny &= ~bit
                ow.allow |= bit
            else:
                ow.allow &= ~bit
                ow.deny |= bit
        if ow.allow or ow.deny:
            chan.overwrites[ow.id] = ow
        else:
            chan.overwrites.pop(ow.id, None)

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
        role_ids = [r.id if isinstance(r, FakeRole) else int(r) for r in roles or []]
        for rid in role_ids:
            if rid not in guild.roles:
                raise ValueError(f"role {rid} is not in guild {guild.name!r}")
        if manage_guild:
            role_ids.append(self.role_with(guild, "Managers", Perm.MANAGE_GUILD).id)
        if administrator:
            role_ids.append(self.role_with(guild, "Admins", Perm.ADMINISTRATOR).id)
        member = FakeMember(user=user, guild_id=guild.id, roles=role_ids, nick=nick, joined_at=iso())
        guild.members[user.id] = member
        return member

    def dm_channel_for(self, user: FakeUser) -> FakeChannel:
        chan = self.dm_by_user.get(user.id)
        if chan is None:
            chan = FakeChannel(id=self.snowflake(), type=1, recipient=user)
            self.dm_by_user[user.id] = chan
            self.channels[chan.id] = chan
        return chan

    def add_group_dm(self, users: list[FakeUser], name: str | None = None) -> FakeChannel:
        chan = FakeChannel(id=self.snowflake(), type=3, name=name, recipients=list(users))
        self.channels[chan.id] = chan
        return chan

    def guild_of(self, chan: FakeChannel) -> FakeGuild | None:
        return self.guilds.get(chan.guild_id) if chan.guild_id is not None else None

    # --- permissions --------------------------------------------------------------------------

    def base_permissions(self, guild: FakeGuild, member: FakeMember) -> int:
        if member.id == guild.owner_id:
            return Perm.ALL
        perms = guild.everyone_role.permissions
        for rid in member.roles:
            role = guild.roles.get(rid)
            if role is not None:
                perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        return perms

    def permissions_in(self, member: FakeMember, chan: FakeChannel) -> int:
        """The member's permissions in a guild channel (Discord's overwrite algorithm + implicit rules)."""
        guild = self.guilds[member.guild_id]
        perms = self.base_permissions(guild, member)
        if perms == Perm.ALL:
            return perms
        everyone = chan.overwrites.get(guild.id)
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for rid in member.roles:
            ow = chan.overwrites.get(rid)
            if ow is not None and ow.type == 0:
                allow |= ow.allow
                deny |= ow.deny
        perms = (perms & ~deny) | allow
        own = chan.overwrites.get(member.id)
        if own is not None and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        if not perms & Perm.SEND_MESSAGES:
            perms &= ~(Perm.SEND_TTS_MESSAGES | Perm.MENTION_EVERYONE | Perm.EMBED_LINKS | Perm.ATTACH_FILES)
        if not perms & Perm.VIEW_CHANNEL:
            perms = 0
        return perms

    def bot_permissions(self, chan: FakeChannel) -> int:
        if chan.is_dm:
            return Perm.DM_DEFAULT
        if chan.is_group_dm:  # the bot is not a recipient
            return 0
        guild = self.guilds[chan.guild_id or 0]
        if not guild.has_bot:
            return 0
        return self.permissions_in(guild.members[self.bot_user.id], chan)

    # --- CDN ----------------------------------------------------------------------------------

    def store_file(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
        keep_content_type: bool = False,
    ) -> RecordedAttachment:
        """Stores bytes on the fake CDN and returns the attachment with a signed, expiring URL."""
        att_id = self.snowflake()
        filename = sanitize_filename(filename)
        ctype = content_type if keep_content_type else guess_content_type(filename, content_type)
        width, height = image_size(data) if (ctype or "").startswith("image/") else (None, None)
        issued = int(time.time())
        ttl = self.config.scaled(self.config.attachment_url_ttl)
        ex = issued + max(1, int(ttl))
        path = f"/attachments/{channel_id}/{att_id}/{quote(filename)}"
        sig = hmac.new(self._cdn_secret, f"{path}|{ex:x}|{issued:x}".encode(), hashlib.sha256).hexdigest()
        query = f"?ex={ex:x}&is={issued:x}&hm={sig}&"
        att = RecordedAttachment(
            id=att_id,
            filename=filename,
            size=len(data),
            content_type=ctype,
            data=data,
            url=f"{self.cdn_base}{path}{query}",
            proxy_url=f"{self.cdn_base}/media{path}{query}",
            width=width,
            height=height,
            description=description,
            ephemeral=ephemeral,
        )
        self.files[att_id] = StoredFile(att, channel_id, self.now() + ttl, sig)
        return att

    def cdn_lookup(
        self, channel_id: str, att_id: str, filename: str, query: dict[str, str]
    ) -> RecordedAttachment | None:
        """The attachment for a CDN GET, or None (unknown, bad signature or expired: Discord's 404)."""
        try:
            stored = self.files[int(att_id)]
        except (KeyError, ValueError):
            return None
        att = stored.attachment
        if str(stored.channel_id) != channel_id or filename != att.filename:
            return None
        if not hmac.compare_digest(query.get("hm", ""), stored.signature):
            return None
        if self.now() > stored.expires_at:
            return None
        return att

    # --- JSON ---------------------------------------------------------------------------------

    def user_json(self, user: FakeUser) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(user.id),
            "username": user.username,
            "global_name": user.global_name,
            "discriminator": user.discriminator,
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
            "collectibles": None,
        }
        if user.bot:
            data["bot"] = True
        return data

    def client_user_json(self) -> dict[str, Any]:
        data = self.user_json(self.bot_user)
        data.update(verified=True, mfa_enabled=False, locale="en-US", flags=0, email=None, bio="")
        return data

    def application_json(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": self.config.application_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": self.verify_key,
            "flags": self.config.application_flags,
            "flags_new": str(self.config.application_flags),
            "owner": self.user_json(self.owner),
            "team": None,
            "bot": self.user_json(self.bot_user),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "install_params": {
                "scopes": ["bot", "applications.commands"],
                "permissions": str(Perm.BOT_DEFAULT),
            },
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len([g for g in self.guilds.values() if not g.deleted]),
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": ["bot", "applications.commands"],
            "rpc_origins": [],
        }

    def role_json(self, role: FakeRole) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(role.id),
            "name": role.name,
            "color": role.color,
            "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
            "hoist": role.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": role.position,
            "permissions": str(role.permissions),
            "managed": role.managed,
            "mentionable": role.mentionable,
            "flags": 0,
        }
        if role.bot_id is not None:
            data["tags"] = {"bot_id": str(role.bot_id)}
        return data

    def member_json(self, member: FakeMember, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in member.roles],
            "joined_at": member.joined_at,
            "premium_since": None,
            "deaf": member.deaf,
            "mute": member.mute,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "avatar_decoration_data": None,
        }
        if with_user:
            data["user"] = self.user_json(member.user)
        return data

    def channel_json(self, chan: FakeChannel) -> dict[str, Any]:
        if chan.is_group_dm:
            return {
                "id": str(chan.id),
                "type": 3,
                "name": chan.name,
                "icon": None,
                "owner_id": str(chan.recipients[0].id) if chan.recipients else None,
                "last_message_id": str(chan.last_message_id) if chan.last_message_id else None,
                "flags": 0,
                "recipients": [self.user_json(u) for u in chan.recipients],
            }
        if chan.is_dm:
            return {
                "id": str(chan.id),
                "type": 1,
                "last_message_id": str(chan.last_message_id) if chan.last_message_id else None,
                "flags": 0,
                "recipients": [self.user_json(chan.recipient)] if chan.recipient else [],
            }
        return {
            "id": str(chan.id),
            "type": chan.type,
            "guild_id": str(chan.guild_id),
            "name": chan.name,
            "position": chan.position,
            "permission_overwrites": [
                {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                for o in chan.overwrites.values()
            ],
            "parent_id": None,
            "topic": chan.topic,
            "nsfw": chan.nsfw,
            "last_message_id": str(chan.last_message_id) if chan.last_message_id else None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }

    def guild_json(self, guild: FakeGuild) -> dict[str, Any]:
        """The REST guild object (GET /guilds/{id})."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [self.role_json(r) for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "nsfw_level": 0,
            "nsfw": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "premium_progress_bar_enabled": False,
            "incidents_data": None,
        }

    def guild_create_json(
        self, guild: FakeGuild, *, all_members: bool, unavailable_flag: bool
    ) -> dict[str, Any]:
        """A GUILD_CREATE payload (full guild: channels, roles, members incl. the bot's)."""
        data = self.guild_json(guild)
        members = list(guild.members.values()) if all_members else [guild.members[self.bot_user.id]]
        data.update(
            joined_at=guild.members[self.bot_user.id].joined_at,
            large=False,
            lazy=True,
            member_count=len(guild.members),
            members=[self.member_json(m) for m in members],
            channels=[self.channel_json(c) for c in guild.channels.values() if not c.deleted],
            threads=[],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            application_command_counts={},
        )
        if unavailable_flag:
            data["unavailable"] = False
        return data

    def attachment_json(self, att: RecordedAttachment) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(att.id),
            "filename": att.filename,
            "size": att.size,
            "url": att.url,
            "proxy_url": att.proxy_url,
        }
        if att.content_type:
            data["content_type"] = att.content_type
        if att.width is not None:
            data["width"] = att.width
            data["height"] = att.height
            data["placeholder"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
            data["placeholder_version"] = 1
        if att.description:
            data["description"] = att.description
        if att.ephemeral:
            data["ephemeral"] = True
        return data

    def message_json(self, msg: RecordedMessage, *, gateway: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": self.user_json(self.users.get(msg.author_id, self.bot_user)),
            "content": msg.content,
            "timestamp": msg.timestamp,
            "edited_timestamp": msg.edited_timestamp,
            "tts": msg.tts,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [self.attachment_json(a) for a in msg.attachments],
            "embeds": msg.embeds,
            "pinned": False,
            "type": msg.type,
            "flags": msg.flags,
            "components": [_component_json(c) for c in msg.components],
        }
        if msg.webhook_id is not None:
            data["webhook_id"] = str(msg.webhook_id)
            data["application_id"] = str(self.application_id)
        if msg.interaction_id is not None and msg.interaction_user_id is not None:
            user = self.user_json(self.users[msg.interaction_user_id])
            owners = {"0": str(msg.guild_id or 0)}
            data["interaction_metadata"] = {
                "id": str(msg.interaction_id),
                "type": msg.interaction_type or 2,
                "user": user,
                "authorizing_integration_owners": owners,
            }
            if msg.interacted_message_id is not None:  # required for a component's (spec)
                data["interaction_metadata"]["interacted_message_id"] = str(msg.interacted_message_id)
            if msg.triggering is not None:  # required for a modal submission's (spec)
                opener_id, opener_type, opener_user, shown_on = msg.triggering
                triggering: dict[str, Any] = {
                    "id": str(opener_id), "type": opener_type, "authorizing_integration_owners": owners,
                    "user": self.user_json(self.users[opener_user]),
                }  # fmt: skip
                if shown_on is not None:
                    triggering["interacted_message_id"] = str(shown_on)
                data["interaction_metadata"]["triggering_interaction_metadata"] = triggering
            if msg.interaction_name is not None:
                data["interaction_metadata"]["name"] = msg.interaction_name
                data["interaction_metadata"]["command_type"] = 1
                data["interaction"] = {
                    "id": str(msg.interaction_id),
                    "type": msg.interaction_type or 2,
                    "name": msg.interaction_name,
                    "user": user,
                }
        if msg.message_reference is not None:
            data["message_reference"] = msg.message_reference
        if gateway and msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            guild = self.guilds.get(msg.guild_id)
            member = guild.members.get(msg.author_id) if guild else None
            if member is not None:
                data["member"] = self.member_json(member, with_user=False)
        return data


def _component_json(component: Any) -> Any:
    """A stored component as Discord answers it: a Unicode emoji has a name and no id (clients
    send ``"id": null``, which Discord accepts; its answers, per the spec, leave the id out)."""
    if isinstance(component, list):
        return [_component_json(c) for c in component]
    if not isinstance(component, dict):
        return component
    out = {key: _component_json(value) for key, value in component.items()}
    emoji = out.get("emoji")
    if isinstance(emoji, dict) and emoji.get("id") is None:
        out["emoji"] = {key: value for key, value in emoji.items() if key != "id"}
    return out
