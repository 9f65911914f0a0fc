"""Apps ▸ "Animate this image" on any message: its first picture, then a form for the prompt and
the options (left empty, an option takes the member's and the channel's defaults)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.client import AnimateBot
from bot.i18n import render, say
from bot.pipeline.animations import ImageSource
from bot.store import OptionDefaults
from cogs.animate import animate_with_defaults
from shared import contract

Interaction = discord.Interaction[AnimateBot]

MENU = "Animate this image"
NO_PICTURE = say(
    "That message has no picture to animate. Use it on a message with an image attached, or with an "
    "image preview of a link."
)
IMAGE_TYPES = tuple(contract.IMAGE_FORMATS.values())
ANYWHERE_INSTALLS = app_commands.AppInstallationType(guild=True, user=True)
ANYWHERE_CONTEXTS = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)


def picture_of(message: discord.Message) -> ImageSource | None:
    """The message's first picture: an attached image, else an embed's image or thumbnail (a link
    preview: fetched from public addresses only, as a member's link is)."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        named = attachment.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))
        if kind in IMAGE_TYPES or (not kind and named):
            return ImageSource(attachment.url, attachment.size, attachment.content_type)
    for embed in message.embeds:
        for url in (embed.image.url, embed.thumbnail.url):
            if url:
                return ImageSource(url, origin="link")
    return None


def _optional(name: str, choices: tuple[object, ...]) -> discord.ui.Select[Any]:
    options = [discord.SelectOption(label=str(c), value=str(c)) for c in choices]
    return discord.ui.Select(custom_id=name, options=options, min_values=0, max_values=1, required=False)


class AnimateModal(discord.ui.Modal):
    """The prompt, and each option (empty: the member's, then the channel's, then the bot's default)."""

    def __init__(self, source: ImageSource, locale: object = None) -> None:
        title = render(say("Animate this image"), locale)
        super().__init__(title=title, custom_id="animate-this", timeout=15 * 60)
        self.source = source
        self.prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
            custom_id="prompt", style=discord.TextStyle.paragraph, max_length=contract.MAX_PROMPT_CHARS,
            placeholder=render(say("What should happen in the video"), locale),
        )  # fmt: skip
        self.choices = {
            "duration": _optional("duration", contract.DURATIONS),
            "aspect_ratio": _optional("aspect_ratio", contract.ASPECT_RATIOS),
            "motion": _optional("motion", contract.MOTIONS),
            "version": _optional("version", contract.VERSIONS),
        }
        self.add_item(discord.ui.Label(text=render(say("Prompt"), locale), component=self.prompt))
        labels = {
            "duration": say("Duration"), "aspect_ratio": say("Aspect ratio"), "motion": say("Motion"),
            "version": say("Version"),
        }  # fmt: skip
        empty = render(say("Empty: your default"), locale)
        for name, select in self.choices.items():
            label = render(labels[name], locale)
            self.add_item(discord.ui.Label(text=label, description=empty, component=select))

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        await interaction.response.defer(thinking=True)
        picked = {
            name: (select.values[0] if select.values else None) for name, select in self.choices.items()
        }
        given = OptionDefaults(
            int(picked["duration"]) if picked["duration"] else None, picked["aspect_ratio"], picked["motion"],
            picked["version"],
        )  # fmt: skip
        await animate_with_defaults(interaction, self.source, self.prompt.value, given)


class ContextMenuCog(commands.Cog):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot
        # A context menu cannot be declared in a cog's class body: it is made and added here.
        # Also where the bot is not (a member's own install): paid like a DM, as /animate is.
        self.menu = app_commands.ContextMenu(
            name=MENU, callback=self.animate_this, allowed_installs=ANYWHERE_INSTALLS,
            allowed_contexts=ANYWHERE_CONTEXTS,
        )  # fmt: skip

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def animate_this(self, interaction: Interaction, message: discord.Message) -> None:
        source = picture_of(message)
        if source is None:
            await interaction.response.send_message(render(NO_PICTURE, interaction.locale), ephemeral=True)
            return
        await interaction.response.send_modal(AnimateModal(source, interaction.locale))


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(ContextMenuCog(bot))
