"""A delivered result's buttons (Animate again, Info, Report, Delete) and, on a report in the mod
log, the moderators' Delete and Block; all alive across restarts (the job id is in the ids)."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord.ext import commands

from bot.discord_adapter.client import AnimateBot
from bot.i18n import Message, Text, render, say
from bot.jobs import InvalidOptions, Job, JobOptions
from bot.media.image import InvalidImage
from bot.pipeline.animations import Removed, Reported
from cogs.animate import JobButton, cannot_animate, reject, start_animation
from cogs.cards import info_text
from cogs.checks import is_moderator, place_here
from shared import contract

Interaction = discord.Interaction[AnimateBot]

NOT_YOURS = say("Only the person who asked for it, or a moderator here, can delete this result.")
NOT_A_MODERATOR = say("Only moderators (Manage Server) can act on reports; nothing was changed.")
REPORTED = {
    Reported.DONE: say("🚩 Reported to this server's moderators. Thank you."),
    Reported.ALREADY: say("You have reported this result already."),
    Reported.OWN: say("That is your own result: you can delete it instead."),
    Reported.NOT_HERE: say(
        "Reports go to the moderators of a server the bot is in; this result is not in one."
    ),
}
REMOVED = {
    Removed.DONE: say("🗑️ Deleted. The job stays in the /jobs list."),
    Removed.NOT_YOURS: NOT_YOURS,
}
Remover = Callable[[Job], Awaitable[None]]  # deletes a result's message
LOOKS: dict[str, tuple[Text, str]] = {
    "continue": (say("Continue"), "⏩"),
    "remix": (say("Remix"), "🔀"),
    "info": (say("Info"), "ℹ️"),
    "report": (say("Report"), "🚩"),
    "delete": (say("Delete"), "🗑️"),
}


def gone(job_id: str) -> Text:
    return say("There is no job `%(job)s` any more.", job=job_id)


def _choice(name: str, current: object, choices: tuple[object, ...]) -> discord.ui.Select[Any]:
    options = [discord.SelectOption(label=str(c), value=str(c), default=c == current) for c in choices]
    return discord.ui.Select(custom_id=name, options=options, min_values=1, max_values=1)


class ContinueModal(discord.ui.Modal):
    """What happens next: the video's last frame is animated with this prompt and the same options."""

    def __init__(self, job: Job, locale: object = None) -> None:
        super().__init__(
            title=render(say("Continue"), locale), custom_id=f"continue:{job.id}", timeout=15 * 60
        )
        self.job_id = job.id
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="prompt", style=discord.TextStyle.paragraph, max_length=contract.MAX_PROMPT_CHARS,
            placeholder=render(say("What happens next"), locale),
        )  # fmt: skip
        self.add_item(discord.ui.Label(text=render(say("Prompt"), locale), component=self.prompt))

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        await interaction.response.defer(thinking=True)
        try:
            found = await interaction.client.services.animations.continuation(self.job_id)
            if found is None:
                await reject(interaction, gone(self.job_id))
                return
            source, earlier = found
            options = dataclasses.replace(earlier, prompt=self.prompt.value)
        except (InvalidImage, InvalidOptions) as exc:
            await reject(interaction, say("⚠️ Can't continue that: %(reason)s", reason=exc.text))
            return
        await start_animation(interaction, source, options)


class RemixModal(discord.ui.Modal):
    """The job's prompt and options, pre-filled, to edit and animate the same picture again."""

    def __init__(self, job: Job, locale: object = None) -> None:
        super().__init__(title=render(say("Remix"), locale), custom_id=f"remix:{job.id}", timeout=15 * 60)
        o = job.options
        self.job_id = job.id
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="prompt", style=discord.TextStyle.paragraph, default=o.prompt,
            max_length=contract.MAX_PROMPT_CHARS,
        )  # fmt: skip
        self.choices = {
            "duration": _choice("duration", o.duration, contract.DURATIONS),
            "aspect_ratio": _choice("aspect_ratio", o.aspect_ratio, contract.ASPECT_RATIOS),
            "motion": _choice("motion", o.motion, contract.MOTIONS),
            "version": _choice("version", o.version, contract.VERSIONS),
        }
        self.add_item(discord.ui.Label(text=render(say("Prompt"), locale), component=self.prompt))
        labels = {
            "duration": say("Duration"), "aspect_ratio": say("Aspect ratio"), "motion": say("Motion"),
            "version": say("Version"),
        }  # fmt: skip
        for name, select in self.choices.items():
            self.add_item(discord.ui.Label(text=render(labels[name], locale), component=select))

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        await interaction.response.defer(thinking=True)
        picked = {name: select.values[0] for name, select in self.choices.items()}
        try:
            earlier = await interaction.client.services.animations.again(self.job_id)
            if earlier is None:
                await reject(interaction, gone(self.job_id))
                return
            options = JobOptions(
                prompt=self.prompt.value, duration=int(picked["duration"]),
                aspect_ratio=picked["aspect_ratio"], motion=picked["motion"], version=picked["version"],
            )  # fmt: skip
        except InvalidOptions as exc:
            await reject(interaction, cannot_animate(exc.text))
            return
        await start_animation(interaction, earlier[0], options)


async def delete_result(interaction: Interaction, job_id: str, remove: Remover) -> Message:
    """Delete a result for whoever clicked (the requester, or a moderator of its server)."""
    outcome = await interaction.client.services.animations.delete_result(
        job_id, interaction.user.id, by=interaction.user.display_name, remove=remove,
        moderator_of=interaction.guild_id if is_moderator(interaction) else None,
    )  # fmt: skip
    return REMOVED.get(outcome, gone(job_id))


class ResultButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"result:(?P<action>continue|remix|info|report|delete):(?P<job_id>[a-z0-9]+)",
):
    """A result's button: the job id is in the custom id, so it works on any old result."""

    def __init__(self, action: str, job_id: str, locale: str | None = None) -> None:
        label, emoji = LOOKS[action]
        super().__init__(
            discord.ui.Button(custom_id=f"result:{action}:{job_id}", label=render(label, locale), emoji=emoji,
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
        animations = interaction.client.services.animations
        locale = interaction.locale
        text: Message
        if self.action in ("remix", "continue"):  # a modal is the answer itself: no defer before it
            job = await animations.info(self.job_id)
            if job is None:
                await interaction.response.send_message(render(gone(self.job_id), locale), ephemeral=True)
                return
            await interaction.response.send_modal(
                RemixModal(job, locale) if self.action == "remix" else ContinueModal(job, locale)
            )
            return
        if self.action == "delete" and place_here(interaction).user_install:
            # Where the bot is not, its own token cannot delete the result: this click's can, as
            # an update of the message the button is on.
            await interaction.response.defer()

            async def remove_here(job: Job) -> None:
                await interaction.delete_original_response()

            text = await delete_result(interaction, self.job_id, remove_here)
            await interaction.followup.send(render(text, locale), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.action == "info":  # anyone may read it: the card shows the prompt already
            job = await animations.info(self.job_id)
            text = info_text(job, locale) if job is not None else gone(self.job_id)
        elif self.action == "report":
            text = REPORTED.get(await animations.report(self.job_id, interaction.user.id), gone(self.job_id))
        else:
            message = interaction.message

            async def remove(job: Job) -> None:
                if message is not None:
                    await message.delete()

            text = await delete_result(interaction, self.job_id, remove)
        await interaction.followup.send(render(text, locale), ephemeral=True)


class ReportButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"report:(?P<action>delete|block):(?P<job_id>[a-z0-9]+)",
):
    """On a report in the mod log: the moderators' Delete (the result) and Block (its requester)."""

    def __init__(self, action: str, job_id: str, locale: str | None = None) -> None:
        label = say("Delete result") if action == "delete" else say("Block member")
        super().__init__(
            discord.ui.Button(custom_id=f"report:{action}:{job_id}", label=render(label, locale),
                              style=discord.ButtonStyle.danger)
        )  # fmt: skip
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ReportButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        await interaction.response.defer(ephemeral=True, thinking=True)
        services = interaction.client.services
        locale = interaction.locale
        job = await services.animations.info(self.job_id)
        if job is None:
            await interaction.followup.send(render(gone(self.job_id), locale), ephemeral=True)
            return
        if not is_moderator(interaction) or interaction.guild_id != job.guild_id:
            await interaction.followup.send(render(NOT_A_MODERATOR, locale), ephemeral=True)
            return
        text: Message
        if self.action == "delete":
            text = await delete_result(interaction, self.job_id, self._delete_posted(interaction.client))
        else:
            assert job.guild_id is not None and job.user_id is not None
            await services.moderation.block_member(
                job.guild_id, interaction.user.id, job.user_id, f"reported result {job.id}"
            )
            text = say(
                "⛔ %(member)s is blocked from /animate here (`/quota unblock` undoes it).",
                member=f"<@{job.user_id}>",
            )
        await interaction.followup.send(render(text, locale), ephemeral=True)

    @staticmethod
    def _delete_posted(bot: AnimateBot) -> Remover:
        async def remove(job: Job) -> None:
            if job.result_channel_id is None or job.result_message_id is None:
                return  # posted before results were located: the card still says it is deleted
            message = bot.get_partial_messageable(job.result_channel_id).get_partial_message(
                job.result_message_id
            )
            with contextlib.suppress(discord.NotFound):  # deleted already: the same end
                await message.delete()

        return remove


def result_buttons(job: Job) -> discord.ui.View:
    """A result's buttons, in its job's language (everyone sees the same message)."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton("again", job.id, locale=job.locale))
    for action in ("remix", "continue", "info", "report", "delete"):
        view.add_item(ResultButton(action, job.id, job.locale))
    return view


def report_buttons(job_id: str, locale: str | None = None) -> discord.ui.View:
    """A report's buttons in the mod log, in the server's language."""
    view = discord.ui.View(timeout=None)
    view.add_item(ReportButton("delete", job_id, locale))
    view.add_item(ReportButton("block", job_id, locale))
    return view


class ResultsCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(ResultButton, ReportButton)
        self.bot.render_result = result_buttons
        self.bot.render_report = report_buttons

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=False)

    async def _reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        """Stars on results count toward the server's showcase (raw events: old results too)."""
        if payload.user_id == getattr(self.bot.user, "id", None):
            return
        await self.bot.services.showcase.reaction(
            payload.message_id, payload.user_id, str(payload.emoji), added
        )

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(ResultButton, ReportButton)
        self.bot.render_result = None
        self.bot.render_report = None


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(ResultsCog(bot))
