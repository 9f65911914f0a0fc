"""The job's status card: its embed and its buttons (rendering only)."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.jobs import IN_FLIGHT, Job, JobState
from bot.pipeline.delivery import describe

STATE_LABELS = {
    JobState.QUEUED: "⏳ Queued",
    JobState.SUBMITTING: "📤 Submitting",
    JobState.PROCESSING: "🎬 Rendering",
    JobState.COMPLETED: "✅ Done, sending…",
    JobState.FAILED: "❌ Failed",
    JobState.CANCELLED: "🚫 Cancelled",
    JobState.EXPIRED: "⌛ Timed out",
    JobState.DELIVERED: "✅ Delivered",
}


def status_embed(job: Job, detail: str = "") -> discord.Embed:
    failed = job.outcome in ("failed", "expired", "cancelled") or job.state in (
        JobState.FAILED,
        JobState.EXPIRED,
        JobState.CANCELLED,
    )
    colour = discord.Colour.red() if failed else discord.Colour.blurple()
    label = STATE_LABELS[job.state]
    if job.state is JobState.DELIVERED and job.outcome != "completed":
        label = f"❌ {job.outcome.capitalize() if job.outcome else 'Ended'}"
    embed = discord.Embed(title=f"Animation {job.id}", colour=colour, description=describe(job))
    embed.add_field(name="State", value=f"{label}{f' · {detail}' if detail else ''}", inline=False)
    if job.error and failed:
        embed.add_field(name="Why", value=job.error[:1000], inline=False)
    if job.user_id:
        embed.add_field(name="Asked by", value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name="Started", value=f"<t:{int(job.created_at)}:R>", inline=True)
    return embed


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"job:(?P<action>cancel|again):(?P<job_id>[a-z0-9]+)",
):
    """A card's button, alive across restarts: the job id is in the custom id.

    Being a dynamic item, it is matched by pattern: discord.py keeps no per-message record of
    the cards, however many there are.
    """

    def __init__(self, action: str, job_id: str, *, disabled: bool = False) -> None:
        cancel = action == "cancel"
        super().__init__(
            discord.ui.Button(
                custom_id=f"job:{action}:{job_id}",
                label="Cancel" if cancel else "Animate again",
                style=discord.ButtonStyle.danger if cancel else discord.ButtonStyle.secondary,
                disabled=disabled,
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        from cogs.animate import on_job_button  # the command module owns what a click does

        await on_job_button(interaction, self.action, self.job_id)


def job_buttons(job: Job) -> discord.ui.View:
    """Cancel while it runs, Animate again once it ended."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id, disabled=job.state not in IN_FLIGHT))
    view.add_item(JobButton("again", job.id, disabled=job.state in IN_FLIGHT))
    return view
