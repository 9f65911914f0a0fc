"""The discord.py client: cogs loaded in ``setup_hook``, services handed in from outside.

With RoboDanny's shape (its launcher opens the database pool and sets ``bot.pool``): the runner
opens every service with :func:`bot.services.open_services` and sets :attr:`AnimateBot.services`
before logging in; the client builds nothing of its own. Cogs are extensions loaded in
``setup_hook`` and reach the services through the bot they are given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import discord
import yarl
from discord.ext import commands

from bot.config import Settings
from bot.jobs import Job
from bot.services import Services
from shared.webhooks import WEBHOOK_PATH

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.animate", "cogs.jobs", "cogs.moderation")

# A job's status card as the cog that owns it draws it: the embed and its buttons.
CardRenderer = Callable[[Job, str], tuple[discord.Embed, discord.ui.View]]


def point_discord_at(settings: Settings) -> None:
    """Send discord.py's REST and gateway traffic where the settings say (proxy or fake)."""
    discord.http.Route.BASE = settings.discord_api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class AnimateBot(commands.Bot):
    services: Services  # set by the runner before login (not for `sync`, which runs no command)
    render_card: CardRenderer | None = None  # registered by the cog that owns the card

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.settings = settings

    async def setup_hook(self) -> None:
        self.tree.error(self.on_app_command_error)
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
        channel cache, which READY and GUILD_CREATE fill."""
        await self.wait_until_ready()
        await services.pipeline.start()

    def health(self) -> dict[str, object]:
        """The client's part of the receiver's ``/healthz``."""
        latency = self.latency  # NaN until the first heartbeat is acknowledged
        return {
            "discord": not self.is_closed() and self.is_ready(),
            "latency_ms": None if math.isnan(latency) else round(latency * 1000),
        }

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
