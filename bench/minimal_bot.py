"""The bound of benchmark 1: the smallest discord.py bot that answers /animate, by deferring.

Run as ``python -m bench.minimal_bot`` with ``DISCORD_TOKEN``, ``DISCORD_API_BASE`` and
``DISCORD_GATEWAY_URL`` (the same settings the real bot reads), pointed at the Discord fake the
same way ``bot.discord_adapter.client.point_discord_at`` does it.
Its /animate has the real command's options and
does nothing but ``interaction.response.defer(thinking=True)``: no logging, no database, no
follow-up. With ``BENCH_SYNC_GUILD`` it publishes that one command to the server first (the real
bot's is published by ``python -m bot sync --guild``), so the fake sends both the same payload.
Same library, same intents, same event loop policy as the real bot: what is left is the cost of
discord.py itself and of the fake's round trip.
"""

from __future__ import annotations

import os
from typing import Literal

import discord
import yarl
from discord import app_commands


class MinimalBot(discord.Client):
    def __init__(self, sync_guild: int | None) -> None:
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.sync_guild = sync_guild
        self.tree.add_command(animate)

    async def setup_hook(self) -> None:
        if self.sync_guild is not None:
            guild = discord.Object(id=self.sync_guild)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        print("logged in as", self.user, flush=True)  # the line the benchmark waits for


@app_commands.command(name="animate", description="Animate a still image into a short video")
async def animate(
    interaction: discord.Interaction,
    image: discord.Attachment,
    prompt: app_commands.Range[str, 1, 1000],
    duration: Literal[5, 10] = 5,
    aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9",
    motion: Literal["low", "medium", "high"] = "medium",
    version: Literal["gen-2", "gen-3", "gen-4"] = "gen-4",
) -> None:
    await interaction.response.defer(thinking=True)


def main() -> None:
    discord.http.Route.BASE = os.environ["DISCORD_API_BASE"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["DISCORD_GATEWAY_URL"])
    guild = os.environ.get("BENCH_SYNC_GUILD")
    MinimalBot(int(guild) if guild else None).run(os.environ["DISCORD_TOKEN"], log_handler=None)


if __name__ == "__main__":
    main()
