"""Configuration of the fake Discord server."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024

# Application flags a typical verified-less bot has: GATEWAY_GUILD_MEMBERS_LIMITED,
# GATEWAY_MESSAGE_CONTENT_LIMITED, APPLICATION_COMMAND_BADGE.
DEFAULT_APPLICATION_FLAGS = (1 << 15) | (1 << 19) | (1 << 23)


@dataclass
class FakeConfig:
    """Knobs of :class:`~testkit.fake_discord.FakeDiscord`.

    Every duration below is in *unscaled* seconds and is multiplied by ``time_scale``
    (e.g. ``time_scale=0.01`` turns the 3 s acknowledgement window into 30 ms and the
    15 min token lifetime into 9 s).
    """

    token: str = "fake-bot-token"
    """The bot token; REST calls must carry ``Authorization: Bot <token>`` (else 401)."""
    time_scale: float = 1.0
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks an ephemeral port."""

    ack_deadline: float = 3.0
    """An interaction must get its first callback within this (x time_scale), else 10062."""
    token_lifetime: float = 15 * 60.0
    """Interaction tokens expire after this (x time_scale); then 401 / 50027."""
    attachment_url_ttl: float = 24 * 3600.0
    """Signed CDN attachment URLs answer 404 after this (x time_scale)."""
    heartbeat_interval_ms: int = 41250
    """HELLO heartbeat interval (x time_scale, but never below ``min_heartbeat_interval_ms``)."""
    min_heartbeat_interval_ms: int = 250
    heartbeat_ack_delay: float = 0.02
    """Seconds from a HEARTBEAT to its ACK: a network round trip (not scaled). discord.py starts
    its latency clock in its heartbeat thread only once the send has completed; an ACK sent back
    within microseconds, as loopback allows, is read before that, and discord.py then measures
    the whole interval since the previous beat ("Can't keep up, websocket is 41 s behind")."""

    max_request_size: int = 25 * MiB
    """A whole request body above this answers 413 / 40005."""
    default_attachment_size_limit: int = 10 * MiB
    """``attachment_size_limit`` of interactions outside guilds (DMs) unless overridden."""
    dm_filesize_limit: int = 10 * MiB
    """Per-file limit of messages the bot posts in DM channels."""
    guild_filesize_limit: int = 10 * MiB
    """Default ``filesize_limit`` of :meth:`FakeDiscord.add_guild`."""

    bot_username: str = "AnimateBot"
    application_name: str = "Animate"
    application_flags: int = DEFAULT_APPLICATION_FLAGS
    distinct_application_id: bool = False
    """Modern applications have ``application_id == bot user id``; set True to make them differ."""
    locale: str = "en-US"

    shard_count: int = 1
    """Recommended shard count ``GET /gateway/bot`` returns (``shards``); also the count
    :meth:`FakeDiscord.add_guild`'s ``shard=`` places guilds for."""
    require_sharding: bool = False
    """Close an IDENTIFY without ``shard``, or with fewer shards than ``shard_count``, with 4011
    "Sharding required." (what Discord does to a bot in too many guilds for one session)."""
    session_start_total: int = 1000
    """``session_start_limit.total``: successful IDENTIFYs allowed per ``session_start_reset_after``."""
    session_start_reset_after: int = 24 * 3600 * 1000
    """Length of the session start window in *unscaled* milliseconds (x time_scale); it starts
    with the first IDENTIFY counted after a reset, then ``remaining`` goes back to ``total``."""
    max_concurrency: int = 1
    """``session_start_limit.max_concurrency``: IDENTIFYs allowed per ``identify_window`` (one
    per ``rate_limit_key = shard_id % max_concurrency``)."""
    identify_window: float = 5.0
    """The identify rate-limit window (Discord: 5 s), x time_scale."""

    dispatch_message_events: bool = True
    """Send MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE to the bot (subject to its intents)."""
    ratelimit_limit: int = 50
    """Value of the ``X-RateLimit-Limit`` header (``Remaining`` is always ``limit - 1``)."""
    validate_spec: bool = True
    """Hold every REST request and answer to Discord's OpenAPI spec (``spec/openapi.json``): a
    request it rejects answers 400 / 50035 and lands in ``spec_violations``; an answer of the
    fake's it rejects lands in ``response_violations``. Off only to measure what it costs."""

    def scaled(self, seconds: float) -> float:
        """``seconds`` multiplied by :attr:`time_scale`."""
        return seconds * self.time_scale

    @property
    def heartbeat_ms(self) -> int:
        return max(self.min_heartbeat_interval_ms, int(self.heartbeat_interval_ms * self.time_scale))
