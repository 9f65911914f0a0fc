"""/jobs and /cancel: a person's recent jobs, and stopping one."""

from __future__ import annotations

import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.client import AnimateBot
from bot.jobs import Job
from cogs.animate import cancel_job


def job_line(job: Job) -> str:
    link = ""
    if job.result_url and job.outcome == "completed":
        link = f" · [video]({job.result_url})"
    elif job.status_message_id and job.status_channel_id:
        where = job.guild_id or "@me"
        link = (
            f" · [card](https://discord.com/channels/{where}/{job.status_channel_id}/{job.status_message_id})"
        )
    state = job.outcome if job.state.value == "delivered" and job.outcome else job.state.value
    return f"`{job.id}` **{state}** · <t:{int(job.created_at)}:R> · {job.options.prompt[:40]}{link}"


class JobsCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent animations")
    async def jobs(self, interaction: discord.Interaction) -> None:
        recent = await self.bot.store.recent_jobs(interaction.user.id, limit=10)
        if not recent:
            await interaction.response.send_message(
                "You have no animations yet. Try `/animate`.", ephemeral=True
            )
            return
        lines = "\n".join(job_line(job) for job in recent)
        embed = discord.Embed(title="Your recent animations", description=lines, timestamp=None)
        embed.set_footer(text=f"{len(recent)} shown · as of {time.strftime('%H:%M:%S UTC', time.gmtime())}")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel an animation that has not finished")
    @app_commands.describe(job_id="The job id shown on its card or in /jobs")
    async def cancel(self, interaction: discord.Interaction, job_id: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(await cancel_job(self.bot, interaction, job_id), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, AnimateBot)
    await bot.add_cog(JobsCog(bot))
