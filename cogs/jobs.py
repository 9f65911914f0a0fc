"""/jobs and /cancel: a person's recent jobs, and stopping one."""

from __future__ import annotations

import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.client import AnimateBot
from bot.i18n import render, say
from cogs.cards import cancel_reply, job_line

Interaction = discord.Interaction[AnimateBot]


class JobsCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent animations")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def jobs(self, interaction: Interaction) -> None:
        locale = interaction.locale
        recent = await self.bot.services.animations.recent(interaction.user.id, limit=10)
        if not recent:
            await interaction.response.send_message(
                render(say("You have no animations yet. Try `/animate`."), locale), ephemeral=True
            )
            return
        lines = "\n".join(job_line(job, locale) for job in recent)
        embed = discord.Embed(title=render(say("Your recent animations"), locale), description=lines)
        # The list's own time: a Discord timestamp would be "now", in every language.
        at = time.strftime("%H:%M:%S UTC", time.gmtime())
        embed.set_footer(
            text=render(say("%(count)s shown · as of %(time)s", count=len(recent), time=at), locale)
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel an animation that has not finished")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.describe(job_id="The job id shown on its card or in /jobs")
    async def cancel(self, interaction: Interaction, job_id: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = await cancel_reply(self.bot.services.animations, interaction, job_id)
        await interaction.followup.send(render(reply, interaction.locale), ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(JobsCog(bot))
