"""State the fake keeps (users, guilds, channels, ...) and what it records (messages, requests)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

# --- snowflakes -------------------------------------------------------------------------------

DISCORD_EPOCH_MS = 1420070400000


class SnowflakeFactory:
    """Unique, increasing snowflakes whose timestamp is "now" (so ``created_at`` looks right)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def __call__(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF)
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return value

    def on_shard(self, shard_id: int, shard_count: int) -> int:
        """A snowflake ``s`` with ``(s >> 22) % shard_count == shard_id`` (Discord's shard formula).

        The top bits of a snowflake are its millisecond timestamp, so the timestamp is moved
        forward by up to ``shard_count - 1`` ms; later snowflakes stay above it (unique, increasing).
        """
        if not 0 <= shard_id < shard_count:
            raise ValueError(f"shard {shard_id} is not in range(0, {shard_count})")
        value = self()
        ms = value >> 22
        ms += (shard_id - ms) % shard_count
        if ms != value >> 22:
            value = (ms << 22) | (1 << 17) | (next(self._counter) & 0xFFF)
            self._last = value
        return value


# --- permissions ------------------------------------------------------------------------------


class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    USE_EXTERNAL_STICKERS = 1 << 37
    SEND_MESSAGES_IN_THREADS = 1 << 38
    SEND_POLLS = 1 << 49
    USE_EXTERNAL_APPS = 1 << 50
    ALL = (1 << 53) - 1
    # An app's permissions where its bot is not (a user install in a guild without the bot; the
    # same set Discord documents for DMs and group DMs with other users).
    APP_ELSEWHERE = ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE

    EVERYONE_DEFAULT = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | MENTION_EVERYONE
        | USE_EXTERNAL_EMOJIS
        | CONNECT
        | SPEAK
        | CHANGE_NICKNAME
        | USE_APPLICATION_COMMANDS
        | CREATE_PUBLIC_THREADS
        | USE_EXTERNAL_STICKERS
        | SEND_MESSAGES_IN_THREADS
        | SEND_POLLS
        | USE_EXTERNAL_APPS
    )
    BOT_DEFAULT = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS
        | USE_APPLICATION_COMMANDS
        | SEND_MESSAGES_IN_THREADS
    )
    DM_DEFAULT = (
        VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS
        | MENTION_EVERYONE
        | USE_APPLICATION_COMMANDS
        | USE_EXTERNAL_APPS
    )


# --- entities ---------------------------------------------------------------------------------


@dataclass(eq=False)
class FakeUser:
    """A Discord user. ``accepts_dms=False`` makes DMs from the bot fail with 403 / 50007."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    accepts_dms: bool = True
    locale: str = "en-US"
    discriminator: str = "0"
    app_installed: bool = False
    """The app is installed for this user (a user install): its user-installable commands work
    for them anywhere, also in guilds the bot is not in."""


@dataclass(eq=False)
class FakeRole:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 1
    managed: bool = False
    bot_id: int | None = None
    color: int = 0
    hoist: bool = False
    mentionable: bool = False


@dataclass(eq=False)
class Overwrite:
    """A channel permission overwrite; ``type`` 0 = role, 1 = member."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0


@dataclass(eq=False)
class FakeChannel:
    """A guild text channel (type 0), a DM channel with the bot (type 1) or a group DM among
    users (type 3: the bot is never in one; the app reaches it only through user installs)."""

    id: int
    type: int
    guild_id: int | None = None
    name: str | None = None
    position: int = 0
    topic: str | None = None
    nsfw: bool = False
    overwrites: dict[int, Overwrite] = field(default_factory=dict)
    recipient: FakeUser | None = None
    recipients: list[FakeUser] = field(default_factory=list)  # a group DM's members
    deleted: bool = False
    last_message_id: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.type == 1

    @property
    def is_group_dm(self) -> bool:
        return self.type == 3


@dataclass(eq=False)
class FakeMember:
    user: FakeUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = "2024-01-01T00:00:00.000000+00:00"
    deaf: bool = False
    mute: bool = False

    @property
    def id(self) -> int:
        return self.user.id


@dataclass(eq=False)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    filesize_limit: int
    premium_tier: int = 0
    locale: str = "en-US"
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    bot_role_id: int | None = None
    deleted: bool = False
    has_bot: bool = True
    """False: the bot is not a member (no GUILD_CREATE, no events, its REST routes answer 403 /
    50001); members reach the app there only through their own user install."""

    @property
    def everyone_role(self) -> FakeRole:
        return self.roles[self.id]

    @property
    def text_channels(self) -> list[FakeChannel]:
        return [c for c in self.channels.values() if c.type == 0 and not c.deleted]


# --- recorded data ----------------------------------------------------------------------------

IdentifyViolationKind = Literal["max_concurrency", "session_start_limit"]


@dataclass
class IdentifyViolation:
    """An IDENTIFY the fake refused for breaking a session start rule.

    ``max_concurrency``: a second IDENTIFY in the same ``rate_limit_key`` bucket within the
    identify window (answered op 9 INVALID_SESSION ``d=false``); ``session_start_limit``: an
    IDENTIFY with ``remaining == 0`` (closed 4004).
    """

    kind: IdentifyViolationKind
    time: float
    shard: tuple[int, int] | None
    rate_limit_key: int
    connection: int
    """Number of the gateway connection (1-based, in connect order)."""
    previous_identify_at: float | None = None
    """``max_concurrency``: when the bucket's last accepted IDENTIFY happened."""


MessageRoute = Literal[
    "deferred",  # the "thinking..." placeholder a type-5 callback creates (no message event)
    "interaction_response",  # type-4 callback message
    "interaction_update",  # type-7 callback (edits the component's message)
    "followup",  # POST /webhooks/{app}/{token}
    "original_edit",  # PATCH /webhooks/{app}/{token}/messages/@original
    "followup_edit",  # PATCH /webhooks/{app}/{token}/messages/{id}
    "webhook_delete",  # DELETE /webhooks/{app}/{token}/messages/...
    "channel_post",  # POST /channels/{id}/messages in a guild channel
    "dm_post",  # POST /channels/{id}/messages in a DM channel
    "channel_edit",  # PATCH /channels/{id}/messages/{id}
    "channel_delete",  # DELETE /channels/{id}/messages/{id}
    "user_post",  # a member's own message (FakeDiscord.post_as): not the bot's
]

EventKind = Literal["create", "edit", "delete"]


@dataclass
class RecordedAttachment:
    """A file the bot uploaded (or a user attached to an interaction).

    Supports ``att["filename"]``-style access as well as attributes.
    """

    id: int
    filename: str
    size: int
    content_type: str | None
    data: bytes
    url: str = ""
    proxy_url: str = ""
    width: int | None = None
    height: int | None = None
    description: str | None = None
    ephemeral: bool = False

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class MessageVersion:
    """The state of a message after its creation or one edit."""

    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: list[RecordedAttachment]
    flags: int
    route: MessageRoute
    time: float


@dataclass(eq=False)
class RecordedMessage:
    """A message the bot created (latest state in the top-level fields; history in ``versions``)."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    route: MessageRoute
    created_at: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[RecordedAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    webhook_id: int | None = None
    interaction_id: int | None = None
    interaction_user_id: int | None = None
    interaction_name: str | None = None
    interaction_type: int | None = None
    interacted_message_id: int | None = None
    """For a message answering a component interaction: the message whose component was used."""
    triggering: tuple[int, int, int, int | None] | None = None
    """For a message answering a modal's submission: the interaction that opened the modal (id,
    type, user id, and for a component's the message it was on)."""
    message_reference: dict[str, Any] | None = None
    edited_at: float | None = None
    edited_timestamp: str | None = None
    timestamp: str = ""
    deleted: bool = False
    versions: list[MessageVersion] = field(default_factory=list)

    EPHEMERAL = 1 << 6
    LOADING = 1 << 7

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & self.EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred "thinking..." placeholder."""
        return bool(self.flags & self.LOADING)

    @property
    def edited(self) -> bool:
        return self.edited_at is not None

    @property
    def edit_routes(self) -> list[MessageRoute]:
        return [v.route for v in self.versions[1:]]

    def snapshot(self, route: MessageRoute, now: float) -> MessageVersion:
        return MessageVersion(
            content=self.content,
            embeds=list(self.embeds),
            components=list(self.components),
            attachments=list(self.attachments),
            flags=self.flags,
            route=route,
            time=now,
        )


@dataclass(eq=False)
class MessageEvent:
    """One visible change: a message created, edited or deleted (``version`` = state after it)."""

    kind: EventKind
    route: MessageRoute
    time: float
    message: RecordedMessage
    version: MessageVersion
    interaction_id: int | None = None
    """The interaction whose callback / token caused this event (None for bot-token routes)."""

    @property
    def id(self) -> int:
        return self.message.id

    @property
    def channel_id(self) -> int:
        return self.message.channel_id

    @property
    def guild_id(self) -> int | None:
        return self.message.guild_id

    @property
    def content(self) -> str:
        return self.version.content

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.version.embeds

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.version.components

    @property
    def attachments(self) -> list[RecordedAttachment]:
        return self.version.attachments

    @property
    def flags(self) -> int:
        return self.version.flags

    @property
    def ephemeral(self) -> bool:
        return bool(self.version.flags & RecordedMessage.EPHEMERAL)

    def __repr__(self) -> str:
        return (
            f"<MessageEvent {self.kind} via {self.route} id={self.id} channel={self.channel_id} "
            f"content={self.content[:60]!r} files={[a.filename for a in self.attachments]}>"
        )


@dataclass
class RequestRecord:
    """One REST request the fake answered."""

    method: str
    path: str
    status: int
    time: float
    route: str | None = None
    """The matched route template, e.g. ``POST /channels/{channel_id}/messages`` (None = unknown)."""
    query: str = ""
    code: int | None = None
    """Discord JSON error code of an error answer."""
    injected: bool = False
    error: str | None = None

    def __iter__(self) -> Any:
        """Unpacks as ``(method, path, status, time)``."""
        return iter((self.method, self.path, self.status, self.time))


@dataclass
class InteractionCallback:
    """One ``POST /interactions/{id}/{token}/callback`` attempt (accepted or rejected)."""

    type: int
    data: dict[str, Any] | None
    time: float
    latency: float
    """Seconds from the INTERACTION_CREATE dispatch to this callback."""
    status: int
    code: int | None = None
    files: list[RecordedAttachment] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def ephemeral(self) -> bool:
        return bool(int((self.data or {}).get("flags") or 0) & RecordedMessage.EPHEMERAL)
