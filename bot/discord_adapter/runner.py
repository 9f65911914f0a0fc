"""Start and stop the bot process: services, signals, login errors, command sync."""

from __future__ import annotations

import asyncio
import logging
import sys

import discord

from bot.config import Settings
from bot.discord_adapter.client import AnimateBot, point_discord_at
from bot.discord_adapter.messenger import DiscordMessenger
from bot.services import open_services
from shared.signals import stop_requested

log = logging.getLogger(__name__)

STOP_GRACE = 2.0  # seconds the gateway may take to finish after close() before it is cancelled


async def run_bot(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; in-flight jobs stay recorded and resume at the next start."""
    assert settings.discord_token is not None
    point_discord_at(settings)
    bot = AnimateBot(settings)
    async with bot:
        # The services close before the client: stop taking work, let every job rest where it
        # is for the next start, then log out.
        messenger = DiscordMessenger(bot)
        async with open_services(
            settings, messenger, health=bot.health, modlog=messenger, showcase_poster=messenger
        ) as services:
            bot.services = services
            starter = asyncio.create_task(bot.serve_when_ready(services), name="pipeline-start")
            runner = asyncio.create_task(bot.start(settings.discord_token.reveal()), name="discord")
            stopper = asyncio.create_task(stop_requested(), name="signals")
            try:
                done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Never start the pipeline once the services are closing.
                starter.cancel()
                await asyncio.gather(starter, return_exceptions=True)
            if runner in done:
                stopper.cancel()
                try:
                    runner.result()
                except discord.LoginFailure:
                    print("error: Discord refused DISCORD_TOKEN (check the token)", file=sys.stderr)
                    return 1
                return 0
            log.info("stopping: jobs in flight stay recorded and resume at the next start")
        await bot.close()
        # AutoShardedClient.start can outlive close(): a shard still launching (waiting for its
        # identify turn) retries its connection every 5 s forever. Give it a moment, then cancel.
        _, pending = await asyncio.wait({runner}, timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    return 0


async def sync_commands(settings: Settings, guild_id: int | None) -> int:
    """Publish the slash commands, globally or to one server (no services: nothing runs)."""
    assert settings.discord_token is not None
    point_discord_at(settings)
    async with AnimateBot(settings) as bot:
        try:
            await bot.login(settings.discord_token.reveal())
        except discord.LoginFailure:
            print("error: Discord refused DISCORD_TOKEN (check the token)", file=sys.stderr)
            return 1
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
    where = f"server {guild_id}" if guild_id else "every server (global commands can take a while to show)"
    print(f"published {len(synced)} commands to {where}: {', '.join('/' + c.name for c in synced)}")
    return 0
