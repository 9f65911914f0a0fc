"""A delivered result's buttons: Animate again, Info and Delete, alive across restarts."""

from __future__ import annotations

import re
from typing import Any

import discord
from discord.ext import commands

from bot.discord_adapter.client import AnimateBot
from bot.jobs import Job
from bot.pipeline.animations import Removed
from cogs.animate import JobButton
from cogs.cards import info_text
from cogs.checks import is_moderator

Interaction = discord.Interaction[AnimateBot]

NOT_YOURS = "Only the person who asked for it, or a moderator here, can delete this result."


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"result:(?P<action>delete|info):(?P<job_id>[a-z0-9]+)",
):
    """A result's button: the job id is in the custom id, so it works on any old result."""

    def __init__(self, action: str, job_id: str) -> None:
        label, emoji = ("Delete", "🗑️") if action == "delete" else ("Info", "ℹ️")
        super().__init__(
            discord.ui.Button(custom_id=f"result:{action}:{job_id}", label=label, emoji=emoji,
                              style=discord.ButtonStyle.secondary)
        )  # fmt: skip
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ResultButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.action == "info":  # anyone may read it: the card shows the prompt already
            job = await interaction.client.services.animations.info(self.job_id)
            text = info_text(job) if job is not None else f"There is no job `{self.job_id}` any more."
            await interaction.followup.send(text, ephemeral=True)
            return
        message = interaction.message

        async def remove() -> None:
            if message is not None:
                await message.delete()

        outcome = await interaction.client.services.animations.delete_result(
            self.job_id, interaction.user.id, by=interaction.user.display_name, remove=remove,
            moderator_of=interaction.guild_id if is_moderator(interaction) else None,
        )  # fmt: skip
        text = {
            Removed.DONE: "🗑️ Deleted. The job stays in your /jobs list.",
            Removed.NOT_YOURS: NOT_YOURS,
            Removed.NO_SUCH_JOB: f"There is no job `{self.job_id}` any more.",
        }[outcome]
        await interaction.followup.send(text, ephemeral=True)


def result_buttons(job: Job) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("again", job.id))
    view.add_item(ResultButton("info", job.id))
    view.add_item(ResultButton("delete", job.id))
    return view


class ResultsCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ResultButton)
        self.bot.render_result = result_buttons

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ResultButton)
        self.bot.render_result = None


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(ResultsCog(bot))
