"""The discord.py client: cogs loaded in ``setup_hook``, services handed in from outside.

With RoboDanny's shape (its launcher opens the database pool and sets ``bot.pool``): the runner
opens every service with :func:`bot.services.open_services` and sets :attr:`AnimateBot.services`
before logging in; the client builds nothing of its own. Cogs are extensions loaded in
``setup_hook`` and reach the services through the bot they are given.

The client is an ``AutoShardedBot``: one process runs the shards ``SHARD_IDS`` of
``SHARD_COUNT`` (or every shard of Discord's recommended count). Its cache holds only those
shards' guilds, their channels and members, and only their interactions reach it (shard 0's
also every DM); REST works for any guild.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.config import Settings
from bot.discord_adapter.acks import PendingAcks
from bot.discord_adapter.translator import CatalogueTranslator
from bot.i18n import Message, join, render, say
from bot.jobs import Job
from bot.services import Services
from bot.store import StoreUnavailable
from shared.webhooks import WEBHOOK_PATH

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.animate",
    "cogs.context_menu",
    "cogs.defaults",
    "cogs.jobs",
    "cogs.moderation",
    "cogs.prompt_filter",
    "cogs.results",
)
# What a member reads when a command needs the database and it is out of reach (a restart).
STORE_AWAY: Final = say("⚠️ I can't reach my database right now. Please try again shortly.")

# Discord: one IDENTIFY per rate-limit bucket (shard_id % max_concurrency) per 5 s. The bucket's
# clock starts in the hook, just before the IDENTIFY is sent: the margin keeps the next one from
# arriving a hair early.
IDENTIFY_WINDOW: Final = 5.0
IDENTIFY_MARGIN: Final = 0.25

# A job's status card as the cog that owns it draws it: the embed and its buttons.
CardRenderer = Callable[[Job, Message], tuple[discord.Embed, discord.ui.View]]
# A delivered result's buttons, as the cog that owns them draws them.
ResultRenderer = Callable[[Job], discord.ui.View]
# A reported result's buttons in the mod log (by job id), as the cog that owns them draws them.
ReportRenderer = Callable[[str, str | None], discord.ui.View]


def point_discord_at(settings: Settings) -> None:
    """Send discord.py's REST and gateway traffic where the settings say (proxy or fake)."""
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's formula: the shard whose session receives this guild's events."""
    return (guild_id >> 22) % shard_count


class AnimateBot(commands.AutoShardedBot):
    services: Services  # set by the runner before login (not for `sync`, which runs no command)
    render_card: CardRenderer | None = None  # registered by the cog that owns the card
    render_result: ResultRenderer | None = None  # registered by the cog that owns the result's buttons
    render_report: ReportRenderer | None = None  # the same cog's moderator buttons on a report

    def __init__(self, settings: Settings) -> None:
        # discord.py's own "no count": GET /gateway/bot gives the count and every shard runs here.
        shards: dict[str, Any] = {}
        if settings.shard_count is not None:
            shards["shard_count"] = settings.shard_count
        if settings.shard_ids is not None:
            shards["shard_ids"] = list(settings.shard_ids)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **shards,
        )
        self.settings = settings
        self._max_concurrency: int | None = None  # from GET /gateway/bot, asked once
        self._limits_lock = asyncio.Lock()
        self._bucket_free_at: dict[int, float] = {}  # bucket -> when it may IDENTIFY again
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        # What a command's work after its defer waits for (cogs/animate.py): see acks.py.
        self.pending_acks = PendingAcks()

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py parses an INTERACTION_CREATE, schedules its handler, then dispatches
        # "interaction" here at once: the earliest moment this process knows of it.
        if event_name == "interaction":
            self.pending_acks.received(args[0])
        super().dispatch(event_name, *args, **kwargs)

    @property
    def own_shard_ids(self) -> list[int] | None:
        """This process's shards: the ones it was given, or all of the count once known (None
        before ``GET /gateway/bot`` answered)."""
        if self.shard_ids is not None:
            return sorted(self.shard_ids)
        return None if self.shard_count is None else list(range(self.shard_count))

    def serves_guild(self, guild_id: int) -> bool:
        """Whether this guild's events (and so its cache) come to this process; False while the
        shard count is unknown."""
        own, count = self.own_shard_ids, self.shard_count
        return own is not None and count is not None and shard_of(guild_id, count) in own

    async def identify_concurrency(self) -> int:
        """``session_start_limit.max_concurrency`` of ``GET /gateway/bot``, asked once (discord.py
        reads that answer for the shard count and drops the rest); 1, the safe pace, if it fails."""
        async with self._limits_lock:
            if self._max_concurrency is None:
                try:
                    limits = await self.fetch_session_start_limits()
                except (discord.DiscordException, aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("GET /gateway/bot failed (%s): identifying one shard per 5 s", exc)
                    return 1
                self._max_concurrency = max(1, limits.max_concurrency)
                log.info(
                    "session starts: %d of %d left (reset in %.0f s), max_concurrency %d",
                    limits.remaining,
                    limits.total,
                    limits.reset_after / 1000,
                    limits.max_concurrency,
                )
                if limits.remaining < len(self.own_shard_ids or [0]):
                    log.warning("too few session starts left for this process's shards")
            return self._max_concurrency

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Identify as fast as Discord allows: at most one IDENTIFY per bucket per window, instead
        of discord.py's 5 s before every one but the first.

        The turns are the store's, so every process sharing it (PostgreSQL) keeps to one
        IDENTIFY per bucket between them; without services (tests) or with the database away,
        this process paces its own shards only, and a clash with another process costs an op 9
        and a new IDENTIFY (through this hook, a window later)."""
        bucket = (shard_id or 0) % await self.identify_concurrency()
        while (wait := await self._identify_wait(bucket)) > 0:
            log.info("shard %s waits %.1f s for its identify turn (bucket %d)", shard_id, wait, bucket)
            await self._sleep(wait)

    async def _identify_wait(self, bucket: int) -> float:
        """Seconds until ``bucket`` may IDENTIFY; 0.0 means now, and the turn is taken."""
        window = IDENTIFY_WINDOW + IDENTIFY_MARGIN
        services: Services | None = getattr(self, "services", None)
        if services is not None:
            try:
                return await services.store.take_turn(f"identify:{bucket}", window)
            except Exception as exc:  # the gateway must not wait on the database
                log.warning("identify turns unavailable (%s): pacing this process's shards only", exc)
        wait = self._bucket_free_at.get(bucket, 0.0) - self._clock()
        if wait <= 0:
            self._bucket_free_at[bucket] = self._clock() + window
        return max(wait, 0.0)

    async def close(self) -> None:
        self.pending_acks.close()
        await super().close()

    async def launch_shard(self, gateway: yarl.URL, shard_id: int, *, initial: bool = False) -> None:
        # discord.py retries a shard that failed to connect every 5 s, forever, even once the
        # client is closed (its HTTP session then refuses): stop launching on close.
        if self.is_closed():
            return
        await super().launch_shard(gateway, shard_id, initial=initial)

    async def setup_hook(self) -> None:
        self.tree.error(self.on_app_command_error)
        # Before any sync: the published names and descriptions carry every shipped language.
        await self.tree.set_translator(CatalogueTranslator())
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        services = getattr(self, "services", None)
        if services is None:  # `python -m bot sync`: commands only
            return
        log.info(
            "ready to serve: plan=%s webhooks=%s path=%s",
            self.settings.doitong_plan,
            services.webhooks,
            WEBHOOK_PATH if services.receiver else "none (WEBHOOK_PORT=off)",
        )

    async def serve_when_ready(self, services: Services) -> None:
        """Start the pipeline's loops once Discord is ready: deliveries and card edits need the
        channel cache, which READY and GUILD_CREATE fill. discord.py's ready waits for every
        shard of this process (READY and its guilds each)."""
        await self.wait_until_ready()
        await services.pipeline.start()

    def health(self) -> dict[str, object]:
        """The client's part of the receiver's ``/healthz``: ready once every shard of this
        process was; the mean heartbeat latency of the shards that have one."""
        # A shard's latency is inf until its first heartbeat is acknowledged (the mean with it
        # too), and NaN before any shard connects.
        latencies = [latency for _, latency in self.latencies if math.isfinite(latency)]
        return {
            "discord": not self.is_closed() and self.is_ready(),
            "latency_ms": round(1000 * sum(latencies) / len(latencies)) if latencies else None,
            "shard_ids": self.own_shard_ids,
            "shard_count": self.shard_count,
        }

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: discord.app_commands.AppCommandError
    ) -> None:
        """Input Discord's own checks let through (or a bug): a private answer, never silence."""
        message: Message
        if isinstance(error, discord.app_commands.CheckFailure):  # who may run it, or where
            text: Message | None = getattr(error, "text", None)  # ours carry their message
            message = join("⚠️", text, separator=" ") if text is not None else f"⚠️ {error}"
        elif isinstance(error, discord.app_commands.TransformerError):
            message = say("⚠️ Can't do that: %(error)s", error=str(error))
        elif isinstance(getattr(error, "original", None), StoreUnavailable):
            log.warning("command %s: %s", interaction.command and interaction.command.name, error)
            message = STORE_AWAY
        else:
            log.error("command %s failed", interaction.command and interaction.command.name, exc_info=error)
            message = say("⚠️ Something went wrong on our side; nothing was charged. Please try again.")
        await answer_privately(interaction, message)

    async def on_shard_ready(self, shard_id: int) -> None:
        guilds = sum(1 for guild in self.guilds if guild.shard_id == shard_id)
        log.info("shard %d of %s ready: %d guilds", shard_id, self.shard_count, guilds)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info(
            "logged in as %s (%s) in %d guilds on shards %s of %s",
            self.user,
            self.user.id,
            len(self.guilds),
            ",".join(map(str, self.own_shard_ids or [])),
            self.shard_count,
        )


async def answer_privately(interaction: discord.Interaction[Any], text: Message) -> None:
    """``text`` for the member's eyes only (in their language), whatever the command answered before.

    After a public "thinking" defer, Discord turns the first follow-up into that message and
    ignores its ephemeral flag: the placeholder is deleted first so the answer stays private.
    """
    message = render(text, interaction.locale)
    if not interaction.response.is_done():
        await interaction.response.send_message(message, ephemeral=True)
        return
    try:
        original = await interaction.original_response()
        if original.flags.loading:  # still "thinking": not a card or answer the member should keep
            await interaction.delete_original_response()
    except discord.HTTPException:  # gone already, or never sent (a deferred update)
        pass
    await interaction.followup.send(message, ephemeral=True)
