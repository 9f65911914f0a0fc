"""/animate and the job card's buttons: parse, call the animation service, render the answer."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.community.admission import QuotaExceeded, Refused
from bot.discord_adapter.client import STORE_AWAY, AnimateBot
from bot.discord_adapter.limits import TOKEN_LIFETIME
from bot.i18n import Message, join, render, say
from bot.jobs import IN_FLIGHT, InvalidOptions, Job, JobOptions
from bot.media.image import InvalidImage
from bot.pipeline.animations import ImageSource, NotRecorded, Requester, Wanted
from bot.store import OptionDefaults, StoreUnavailable
from cogs.cards import cancel_reply, status_embed
from cogs.checks import place_here
from shared import contract

log = logging.getLogger(__name__)

Interaction = discord.Interaction[AnimateBot]

MAX_LINK_CHARS = 2_000  # a longer "link" is not one a member typed
ONE_PICTURE = say("⚠️ Give the picture one way: attach it as `image`, or link it as `image_url`.")


def cannot_animate(reason: Message) -> Message:
    return say("⚠️ Can't animate that: %(reason)s", reason=reason)


async def reject(interaction: Interaction, message: Message) -> None:
    """Bad input: replace the public "thinking" message with a private explanation, in the
    member's language."""
    with contextlib.suppress(discord.HTTPException):  # already gone is fine
        await interaction.delete_original_response()
    await interaction.followup.send(render(message, interaction.locale), ephemeral=True)


def requester_of(interaction: Interaction) -> Requester:
    user = interaction.user
    place = place_here(interaction)  # a server that did not install the bot pays nothing
    return Requester(
        user_id=user.id,
        guild_id=place.guild_id,
        channel_id=interaction.channel_id,
        role_ids=tuple(r.id for r in user.roles) if isinstance(user, discord.Member) else (),
        interaction_id=interaction.id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at.timestamp() + TOKEN_LIFETIME,
        upload_limit=interaction.filesize_limit,
        age_restricted=isinstance(interaction.channel, discord.TextChannel) and interaction.channel.is_nsfw(),
        user_install=place.user_install,
        asked_in_guild_id=place.asked_in_guild_id,
        locale=str(interaction.locale),
    )


async def start_animation(
    interaction: Interaction, source: ImageSource, options: JobOptions | Wanted
) -> None:
    """Everything after the defer: the service checks and admits, then the card is shown."""
    await interaction.client.pending_acks.cleared()  # a burst's other acks go first
    animations = interaction.client.services.animations
    try:
        accepted = await animations.request(source, options, requester_of(interaction))
    except (InvalidOptions, InvalidImage) as exc:
        await reject(interaction, cannot_animate(exc.text))
        return
    except QuotaExceeded as exc:
        when = say("It frees when that one finishes.")
        if exc.frees_at:  # a Discord timestamp: Discord shows it in the member's language itself
            when = say("It frees %(at)s.", at=f"<t:{int(exc.frees_at) + 1}:R>")
        await reject(interaction, join("⏳", exc.describe(), when, separator=" "))
        return
    except NotRecorded as exc:  # the database is away: not the member's doing
        await reject(interaction, join("⚠️", exc.text, separator=" "))
        return
    except Refused as exc:  # blocked, channel closed, pool or allowance short: the numbers are in it
        await reject(interaction, join("⛔", exc.text, separator=" "))
        return
    job = accepted.job
    log.info("job=%s accepted user=%s guild=%s %s", job.id, job.user_id, job.guild_id, job.options)
    place = (
        say("#%(position)s in the queue", position=accepted.position) if accepted.position else say("queued")
    )
    try:
        message = await interaction.edit_original_response(
            content=None, embed=status_embed(job, place), view=job_buttons(job)
        )
        await animations.card_shown(job, message.channel.id, message.id)
    except discord.HTTPException as exc:  # the job is admitted: it goes on without a card
        log.warning("job=%s status card not shown (%s %s)", job.id, exc.status, exc.code)
    animations.start(job)


async def animate_with_defaults(
    interaction: Interaction, source: ImageSource, prompt: str, given: OptionDefaults
) -> None:
    """The options left out taken from the member's and the channel's defaults (read by the
    service with the rest of the request), then started (after the defer)."""
    await start_animation(interaction, source, Wanted(prompt, given))


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"job:(?P<action>cancel|again):(?P<job_id>[a-z0-9]+)",
):
    """A card's button, alive across restarts: the job id is in the custom id.

    Being a dynamic item, it is matched by pattern: discord.py keeps no per-message record of
    the cards, however many there are. The cog registers it when it loads.
    """

    def __init__(
        self, action: str, job_id: str, *, disabled: bool = False, locale: str | None = None
    ) -> None:
        cancel = action == "cancel"
        super().__init__(
            discord.ui.Button(
                custom_id=f"job:{action}:{job_id}",
                label=render(say("Cancel") if cancel else say("Animate again"), locale),
                style=discord.ButtonStyle.danger if cancel else discord.ButtonStyle.secondary,
                disabled=disabled,
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        """A click on Cancel or Animate again, from any card, before or after a restart."""
        if self.action == "cancel":
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                reply = await cancel_reply(interaction.client.services.animations, interaction, self.job_id)
            except StoreUnavailable:  # a button's error reaches no handler: the member must hear
                reply = STORE_AWAY
            await interaction.followup.send(render(reply, interaction.locale), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        try:
            earlier = await interaction.client.services.animations.again(self.job_id)
        except InvalidOptions as exc:  # an option since retired: the job's row is read unchecked
            await reject(interaction, cannot_animate(exc.text))
            return
        except NotRecorded as exc:
            await reject(interaction, join("⚠️", exc.text, separator=" "))
            return
        if earlier is None:
            await reject(interaction, say("There is no job `%(job)s` any more.", job=self.job_id))
            return
        await start_animation(interaction, *earlier)


def job_buttons(job: Job) -> discord.ui.View:
    """Cancel while it runs, Animate again once it ended."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("cancel", job.id, disabled=job.state not in IN_FLIGHT, locale=job.locale))
    view.add_item(JobButton("again", job.id, disabled=job.state in IN_FLIGHT, locale=job.locale))
    return view


def render_card(job: Job, detail: Message) -> tuple[discord.Embed, discord.ui.View]:
    return status_embed(job, detail), job_buttons(job)


class AnimateCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        # The cards' buttons, from any message and across restarts; and how the pipeline redraws a card.
        self.bot.add_dynamic_items(JobButton)
        self.bot.render_card = render_card

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(JobButton)
        self.bot.render_card = None

    @app_commands.command(name="animate", description="Animate a still image into a short video")
    # Also where the bot is not (a member's own install): paid like a DM (bot.community.installs).
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.describe(
        prompt="What should happen in the video",
        image="A JPEG, PNG or WebP picture (up to 10 MiB); or give image_url",
        image_url="A public link to the picture, instead of attaching it",
        duration="Length in seconds (default: your /settings, then the channel's, then 5)",
        aspect_ratio="Shape of the video (default: your /settings, then the channel's, then 16:9)",
        motion="How much the camera moves (default: your /settings, then the channel's, then medium)",
        version="Model version, later = better, costs more (default: /settings, channel, gen-4)",
    )
    async def animate(
        self,
        interaction: Interaction,
        prompt: app_commands.Range[str, 1, contract.MAX_PROMPT_CHARS],
        image: discord.Attachment | None = None,
        image_url: app_commands.Range[str, 1, MAX_LINK_CHARS] | None = None,
        duration: contract.Duration | None = None,
        aspect_ratio: contract.AspectRatio | None = None,
        motion: contract.Motion | None = None,
        version: contract.Version | None = None,
    ) -> None:
        # Acknowledge first: Discord allows 3 s, and reading the image takes longer than that.
        await interaction.response.defer(thinking=True)
        if (image is None) == (image_url is None):
            await reject(interaction, ONE_PICTURE)
            return
        source = (
            ImageSource(image.url, image.size, image.content_type)
            if image is not None
            else ImageSource(image_url or "", origin="link")
        )
        await animate_with_defaults(
            interaction, source, prompt, OptionDefaults(duration, aspect_ratio, motion, version)
        )


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(AnimateCog(bot))
