"""The discord.py bot: shared resources opened in ``setup_hook``, closed in ``close``.

With RoboDanny's shape: cogs are extensions loaded in ``setup_hook``; the database, the API
client, the pipeline and the webhook receiver hang off the bot. This module and ``cogs/`` are
the only places that import discord; :class:`DiscordMessenger` is the bot's side of the
delivery protocol, so the delivery rules stay in ``bot/delivery.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from datetime import UTC, datetime
from typing import Any

import discord
import yarl
from discord.ext import commands

from bot.api.budget import RequestBudget
from bot.api.client import DoitongClient
from bot.community.admission import Policy, QuotaWindows
from bot.config import Settings
from bot.inbound.receiver import WebhookReceiver
from bot.inbound.relay_subscriber import RelaySubscriber
from bot.jobs import Job
from bot.pipeline.delivery import Attachment, Messenger, Route, RouteUnavailable, UploadTooLarge
from bot.pipeline.pipeline import Pipeline, PipelineOptions
from bot.services import open_api
from bot.store import Guild, Store
from cogs.cards import JobButton, job_buttons, status_embed
from shared.webhooks import WEBHOOK_PATH

log = logging.getLogger(__name__)

# Measured (bench/bench_budget.py, 500 at once): 8 keeps the API's slots busy from the first
# second; unbounded, the first seconds went to 500 image fetches and a queue on the write lock.
ADMISSIONS_AT_ONCE = 8

EXTENSIONS = ("cogs.animate", "cogs.jobs", "cogs.moderation")
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # Discord's default per-file limit since 2025
TOKEN_LIFETIME = 15 * 60.0  # an interaction token's life
TOKEN_MARGIN = 30.0  # do not start a request on a token about to expire


def point_discord_at(settings: Settings) -> None:
    """Send discord.py's REST and gateway traffic where the settings say (proxy or fake)."""
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class AnimateBot(commands.Bot):
    store: Store
    api: DoitongClient
    pipeline: Pipeline

    def __init__(self, settings: Settings, *, sync_only: bool = False) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.settings = settings
        self.sync_only = sync_only
        self.budget = RequestBudget(settings.plan.requests_per_minute, settings.rate_window)
        self.policy = Policy(
            default_plan=settings.default_user_plan,
            windows=QuotaWindows.scaled(settings.quota_time_scale),
            welcome_credits=settings.pool_welcome_credits,
            plans=settings.plans,
        )
        # /animate commands past their defer, validated and admitted this many at a time.
        self.admission_slots = asyncio.Semaphore(ADMISSIONS_AT_ONCE)
        self.receiver: WebhookReceiver | None = None
        self.relay: RelaySubscriber | None = None
        self._resources = contextlib.AsyncExitStack()
        self._starter: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        self.tree.error(self.on_app_command_error)
        self.add_dynamic_items(JobButton)  # the cards' buttons, from any message, across restarts
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_only:
            return
        settings = self.settings
        self.store = await Store.open(settings.database_path)
        self._resources.push_async_callback(self.store.close)
        api = await self._resources.enter_async_context(
            open_api(settings, before_request=self.budget.acquire, on_rate_limit=self.budget.observe)
        )
        self.api = api.client
        if api.emulated:
            log.info("no DOITONG_API_KEY: using the built-in emulator (a stand-in, not a model)")
        webhook_url = None
        if settings.public_webhook_url and settings.doitong_webhook_secret is not None:
            webhook_url = settings.public_webhook_url
        self.pipeline = Pipeline(
            self.store,
            self.api,
            DiscordMessenger(self),
            PipelineOptions(
                plan=settings.plan,
                webhook_url=webhook_url,
                rate_window=settings.rate_window,
                job_timeout=settings.job_timeout,
            ),
        )
        # Listening unless WEBHOOK_PORT=off: /healthz serves the container's health check even when
        # webhooks are off (then every POST is refused, having no secret to verify it with).
        secret = settings.doitong_webhook_secret
        if settings.webhook_port is not None:
            self.receiver = WebhookReceiver(
                secret.reveal().encode() if secret else None, self.pipeline.report, health=self._health
            )
            await self.receiver.start(settings.webhook_host, settings.webhook_port)
            self._resources.push_async_callback(self.receiver.stop)
        if api.emulated:
            await self.pipeline.abandon_in_flight(
                "the built-in emulator restarted with the bot and no longer knows this job; please try again"
            )
        self._resources.push_async_callback(self.pipeline.stop)
        if settings.relay_url:
            # The bot connects out to the relay; config.py made sure the token and secret exist.
            assert settings.relay_token is not None and secret is not None
            self.relay = RelaySubscriber(
                settings.relay_url,
                settings.relay_token.reveal(),
                secret.reveal().encode(),
                self.pipeline.report,
                on_change=self.pipeline.poller.set_webhooks,
            )
            self.pipeline.poller.set_webhooks(False)  # poll at the normal pace until the stream is up
            await self.relay.start()
            self._resources.push_async_callback(self.relay.stop)  # stops before the pipeline and store
        # Deliveries and card edits need the channel cache, which READY and GUILD_CREATE fill.
        self._starter = asyncio.create_task(self._start_pipeline_when_ready(), name="pipeline-start")
        log.info(
            "ready to serve: plan=%s webhooks=%s path=%s",
            settings.doitong_plan,
            ("on, through the relay" if self.relay else "on") if webhook_url else "off (polling)",
            WEBHOOK_PATH if self.receiver else "none (WEBHOOK_PORT=off)",
        )

    async def alert(self, channel_id: int | None, text: str) -> None:
        """A note to a server's moderators (their alert channel), best effort."""
        if channel_id is None:
            log.warning("alert with no alert channel set: %s", text)
            return
        try:
            await self.get_partial_messageable(channel_id).send(text)
        except discord.HTTPException as exc:
            log.warning("alert to channel %s failed (%s %s): %s", channel_id, exc.status, exc.code, text)

    async def alert_low_balance(self, guild: Guild) -> None:
        await self.alert(
            guild.alert_channel_id,
            f"⚠️ The server's credit pool is down to **{guild.balance}** credits, below the alert line of "
            f"{guild.low_balance_threshold}. Top it up with `/pool topup`.",
        )

    async def _start_pipeline_when_ready(self) -> None:
        await self.wait_until_ready()
        await self.pipeline.start()

    def _health(self) -> dict[str, object]:
        health: dict[str, object] = {
            "discord": not self.is_closed() and self.is_ready(),
            "latency_ms": round(self.latency * 1000),
        }
        if self.relay is not None:
            health["relay"] = self.relay.connected
        return health

    async def close(self) -> None:
        # Stop taking work first, then let every job rest where it is for the next start.
        if self._starter is not None:
            self._starter.cancel()
        await self._resources.aclose()
        await super().close()

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: discord.app_commands.AppCommandError
    ) -> None:
        """Input Discord's own checks let through (or a bug): a private answer, never silence."""
        if isinstance(error, discord.app_commands.CheckFailure):  # who may run it, or where
            message = f"⚠️ {error}"
        elif isinstance(error, discord.app_commands.TransformerError):
            message = f"⚠️ Can't do that: {error}"
        else:
            log.error("command %s failed", interaction.command and interaction.command.name, exc_info=error)
            message = "⚠️ Something went wrong on our side; nothing was charged. Please try again."
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("logged in as %s (%s) in %d guilds", self.user, self.user.id, len(self.guilds))


# --- the delivery protocol, Discord side -----------------------------------------------------


class DiscordMessenger(Messenger):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    def _token_alive(self, job: Job) -> bool:
        return bool(job.interaction_token) and (job.token_expires_at or 0) - TOKEN_MARGIN > time.time()

    def _webhook(self, job: Job) -> discord.Webhook:
        assert self.bot.application_id is not None and job.interaction_token is not None
        return discord.Webhook.partial(self.bot.application_id, job.interaction_token, client=self.bot)

    def upload_limit(self, job: Job, route: Route) -> int | None:
        if route is Route.INTERACTION:
            return (job.upload_limit or DEFAULT_UPLOAD_LIMIT) if self._token_alive(job) else None
        if route is Route.CHANNEL:
            if job.channel_id is None:
                return None
            if job.guild_id is None:
                return DEFAULT_UPLOAD_LIMIT  # the DM the command came from
            channel = self.bot.get_channel(job.channel_id)
            if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
                return None  # deleted, or no longer visible to the bot
            perms = channel.permissions_for(channel.guild.me)
            can_send = (
                perms.send_messages_in_threads if isinstance(channel, discord.Thread) else perms.send_messages
            )
            if not can_send:
                return None
            return channel.guild.filesize_limit if perms.attach_files else 0
        # A DM is the last resort for a job from a server; a DM job already used its channel.
        return DEFAULT_UPLOAD_LIMIT if job.guild_id is not None and job.user_id else None

    async def send(self, job: Job, route: Route, text: str, attachment: Attachment | None) -> None:
        files = [discord.File(io.BytesIO(attachment.data), attachment.filename)] if attachment else []
        try:
            if route is Route.INTERACTION:
                await self._webhook(job).send(content=text, files=files, wait=True)
            elif route is Route.CHANNEL:
                assert job.channel_id is not None
                await self.bot.get_partial_messageable(job.channel_id).send(content=text, files=files)
            else:
                await (await self._requester(job)).send(content=text, files=files)
        except discord.HTTPException as exc:
            if exc.status == 413 or exc.code == 40005:
                raise UploadTooLarge from None
            if exc.status in (401, 403, 404):
                raise RouteUnavailable(f"{exc.status} {exc.code}: {exc.text}") from None
            raise

    async def alert(self, channel_id: int | None, text: str) -> None:
        await self.bot.alert(channel_id, text)

    async def find_sent(self, job: Job, since: float) -> bool | None:
        """Look for the bot's message naming this job, posted since ``since``, wherever the
        routes post: the job's channel (follow-ups land there too) and the member's DMs."""
        me = self.bot.user
        if me is None:
            return None
        after = discord.Object(id=discord.utils.time_snowflake(datetime.fromtimestamp(since - 5, UTC)))
        places: list[discord.abc.Messageable] = []
        if job.channel_id is not None:
            places.append(self.bot.get_partial_messageable(job.channel_id))
        try:
            if job.user_id is not None:
                user = await self._requester(job)
                places.append(user.dm_channel or await user.create_dm())
            for place in places:
                # Bounded: the send was seconds before the crash; 300 messages is a busy minute.
                async for message in place.history(after=after, limit=300):
                    if message.author.id == me.id and f"`{job.id}`" in message.content:
                        return True
        except discord.HTTPException as exc:  # no history access here: cannot tell
            log.info("job=%s history not readable (%s %s)", job.id, exc.status, exc.code)
            return None
        return False

    async def _requester(self, job: Job) -> discord.User:
        assert job.user_id is not None
        return self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)

    async def show_status(self, job: Job, detail: str) -> None:
        if job.status_message_id is None:
            return
        kwargs: dict[str, Any] = {"embed": status_embed(job, detail), "view": job_buttons(job)}
        if self._token_alive(job):
            try:
                await self._webhook(job).edit_message(job.status_message_id, **kwargs)
                return
            except discord.HTTPException as exc:
                log.debug("job=%s card edit by token failed (%s); using the bot's token", job.id, exc.status)
        if job.status_channel_id is None:
            return
        message = self.bot.get_partial_messageable(job.status_channel_id).get_partial_message(
            job.status_message_id
        )
        try:
            await message.edit(**kwargs)
        except discord.HTTPException as exc:
            log.info("job=%s status card not editable (%s %s)", job.id, exc.status, exc.code)
