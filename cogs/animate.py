"""/animate and the job card's buttons: parse, call the core, render the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.community.admission import QuotaExceeded, Refused, admit
from bot.discord_adapter.client import TOKEN_LIFETIME, AnimateBot
from bot.jobs import InvalidOptions, Job, JobOptions, may_cancel
from bot.media.fetch import FetchError, fetch_bytes
from bot.media.image import InvalidImage, check_image_size, validate_image
from bot.pipeline.pipeline import JobBusy
from bot.store import NewJob
from cogs.cards import job_buttons, status_embed
from shared import contract

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where the picture comes from: a fresh attachment, or an old job's URL (Animate again)."""

    url: str
    size: int | None
    declared_type: str | None


async def reject(interaction: discord.Interaction, message: str) -> None:
    """Bad input: replace the public "thinking" message with a private explanation."""
    with contextlib.suppress(discord.HTTPException):  # already gone is fine
        await interaction.delete_original_response()
    await interaction.followup.send(message, ephemeral=True)


async def read_source(source: ImageSource, http: httpx.AsyncClient) -> bytes:
    if source.size is not None:
        check_image_size(source.size)  # refuse a 50 MB upload without downloading it
    try:
        data = await fetch_bytes(http, source.url, max_bytes=contract.MAX_IMAGE_BYTES)
    except FetchError as exc:
        raise InvalidImage(f"the image could not be read from Discord ({exc}); attach it again") from None
    await asyncio.to_thread(validate_image, data, source.declared_type)
    return data


async def start_animation(
    bot: AnimateBot, interaction: discord.Interaction, source: ImageSource, options: dict[str, Any]
) -> None:
    """Everything after the defer: validate, admit, show the card, hand to the pipeline."""
    # A few at a time: a burst of hundreds would otherwise crowd the image fetches and the
    # store's write lock all at once, starving the defers of later commands and the scheduler.
    async with bot.admission_slots:
        await _start_animation(bot, interaction, source, options)


async def _start_animation(
    bot: AnimateBot, interaction: discord.Interaction, source: ImageSource, options: dict[str, Any]
) -> None:
    try:
        job_options = JobOptions(**options)
        await read_source(source, bot.pipeline.http)
    except (InvalidOptions, InvalidImage) as exc:
        await reject(interaction, f"⚠️ Can't animate that: {exc}")
        return
    new = NewJob(
        source="discord",
        image_ref=source.url,
        options=job_options,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        interaction_id=interaction.id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at.timestamp() + TOKEN_LIFETIME,
        upload_limit=interaction.filesize_limit,
    )
    roles = [r.id for r in interaction.user.roles] if isinstance(interaction.user, discord.Member) else []
    try:
        admitted = await admit(bot.store, new, bot.policy, roles=roles)
    except QuotaExceeded as exc:
        when = (
            f" It frees <t:{int(exc.frees_at) + 1}:R>."
            if exc.frees_at
            else " It frees when that one finishes."
        )
        await reject(interaction, f"⏳ {exc.describe()}{when}")
        return
    except Refused as exc:  # blocked, channel closed, pool or allowance short: the numbers are in it
        await reject(interaction, f"⛔ {exc}")
        return
    job = admitted.job
    if admitted.low_balance is not None:
        await bot.alert_low_balance(admitted.low_balance)
    log.info("job=%s accepted user=%s guild=%s %s", job.id, job.user_id, job.guild_id, job.options)
    position = await bot.store.queue_position(job)
    try:
        message = await interaction.edit_original_response(
            content=None, embed=status_embed(job, f"#{position} in the queue"), view=job_buttons(job)
        )
        await bot.store.set_status_card(job.id, message.channel.id, message.id)
    except discord.HTTPException as exc:  # the job is admitted: it goes on without a card
        log.warning("job=%s status card not shown (%s %s)", job.id, exc.status, exc.code)
    bot.pipeline.accepted(job)


class AnimateCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    @app_commands.command(name="animate", description="Animate a still image into a short video")
    @app_commands.describe(
        image="A JPEG, PNG or WebP picture (up to 10 MiB)",
        prompt="What should happen in the video",
        duration="Length in seconds",
        aspect_ratio="Shape of the video",
        motion="How much the camera moves",
        version="Model version (later = better, costs more)",
    )
    async def animate(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, contract.MAX_PROMPT_CHARS],
        duration: Literal[5, 10] = 5,
        aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9",
        motion: Literal["low", "medium", "high"] = "medium",
        version: Literal["gen-2", "gen-3", "gen-4"] = "gen-4",
    ) -> None:
        # Acknowledge first: Discord allows 3 s, and reading the image takes longer than that.
        await interaction.response.defer(thinking=True)
        source = ImageSource(image.url, image.size, image.content_type)
        options = {
            "prompt": prompt,
            "duration": duration,
            "aspect_ratio": aspect_ratio,
            "motion": motion,
            "version": version,
        }
        await start_animation(self.bot, interaction, source, options)


async def cancel_job(bot: AnimateBot, interaction: discord.Interaction, job_id: str) -> str:
    """The answer to a cancel request, by button or by /cancel."""
    job = await bot.store.get_job(job_id.strip().lower())
    if job is None:
        return f"There is no job `{job_id}`."
    moderator = (
        isinstance(interaction.user, discord.Member) and interaction.user.guild_permissions.manage_guild
    )
    if not may_cancel(job, interaction.user.id, moderator_of=interaction.guild_id if moderator else None):
        return "Only the person who asked for this animation (or a moderator) can cancel it."
    try:
        cancelled = await bot.pipeline.cancel(job, f"cancelled by {interaction.user.display_name}")
    except JobBusy:
        return f"Job `{job.id}` is being sent to the API right now; try again in a few seconds."
    if cancelled is None:
        return f"Job `{job.id}` already ended ({job.state}); nothing to cancel."
    return f"Cancelled job `{job.id}`. It does not count toward your quota."


async def on_job_button(interaction: discord.Interaction, action: str, job_id: str) -> None:
    """A click on a card's Cancel or Animate again, from any card, before or after a restart."""
    bot = interaction.client
    assert isinstance(bot, AnimateBot)
    if action == "cancel":
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(await cancel_job(bot, interaction, job_id), ephemeral=True)
        return
    await interaction.response.defer(thinking=True)
    job = await bot.store.get_job(job_id)
    if job is None:
        await reject(interaction, f"There is no job `{job_id}` any more.")
        return
    await start_animation(bot, interaction, ImageSource(job.image_ref, None, None), options_of(job))


def options_of(job: Job) -> dict[str, Any]:
    o = job.options
    return {
        "prompt": o.prompt,
        "duration": o.duration,
        "aspect_ratio": o.aspect_ratio,
        "motion": o.motion,
        "version": o.version,
    }


async def setup(bot: commands.Bot) -> None:
    assert isinstance(bot, AnimateBot)
    await bot.add_cog(AnimateCog(bot))
