"""/settings (a member's own default /animate options) and /animate-defaults (a channel's, set
by moderators). Which wins is said in the commands' help: see bot.community.defaults."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.community.defaults import PRECEDENCE, describe
from bot.discord_adapter.client import AnimateBot
from bot.discord_adapter.client import answer_privately as tell
from bot.i18n import Message, say
from bot.jobs import InvalidOptions
from bot.store import OptionDefaults
from cogs.moderation import ModeratorGroup
from shared import contract

Interaction = discord.Interaction[AnimateBot]

OPTIONS = {
    "duration": "Length in seconds",
    "aspect_ratio": "Shape of the video",
    "motion": "How much the camera moves",
    "version": "Model version (later = better, costs more)",
}


def nothing_changed(exc: InvalidOptions) -> Message:
    return say("⚠️ Nothing changed: %(reason)s.", reason=exc.text)


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
class SettingsGroup(app_commands.Group, name="settings", description="Your own default /animate options"):
    def __init__(self, bot: AnimateBot) -> None:
        super().__init__()
        self.bot = bot

    @app_commands.command(name="show", description="Your default /animate options and which wins")
    async def show(self, interaction: Interaction) -> None:
        mine = await self.bot.services.animations.my_defaults(interaction.user.id)
        await tell(
            interaction,
            say(
                "Your defaults: **%(defaults)s**.\nFor each option /animate takes %(order)s.",
                defaults=describe(mine),
                order=PRECEDENCE,
            ),
        )

    @app_commands.command(
        name="set", description="Set your defaults (yours beat a channel's; given options beat both)"
    )
    @app_commands.describe(**OPTIONS)
    async def set(
        self, interaction: Interaction, duration: contract.Duration | None = None,
        aspect_ratio: contract.AspectRatio | None = None, motion: contract.Motion | None = None,
        version: contract.Version | None = None,
    ) -> None:  # fmt: skip
        try:
            mine = await self.bot.services.animations.set_my_defaults(
                interaction.user.id, OptionDefaults(duration, aspect_ratio, motion, version)
            )
        except InvalidOptions as exc:
            await tell(interaction, nothing_changed(exc))
            return
        await tell(interaction, say("Your defaults: **%(defaults)s**.", defaults=describe(mine)))

    @app_commands.command(name="clear", description="Forget your default /animate options")
    async def clear(self, interaction: Interaction) -> None:
        had = await self.bot.services.animations.clear_my_defaults(interaction.user.id)
        await tell(interaction, say("Your defaults are cleared.") if had else say("You had no defaults."))


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class ChannelDefaultsGroup(
    ModeratorGroup, name="animate-defaults", description="A channel's default /animate options (moderators)"
):
    @app_commands.command(name="show", description="A channel's default /animate options")
    async def show(self, interaction: Interaction, channel: discord.TextChannel | None = None) -> None:
        where = channel.id if channel else interaction.channel_id
        assert where is not None
        defaults = await self.bot.services.moderation.channel_defaults(where)
        await tell(
            interaction,
            say(
                "%(channel)s defaults: **%(defaults)s**.\nFor each option /animate takes %(order)s.",
                channel=f"<#{where}>",
                defaults=describe(defaults),
                order=PRECEDENCE,
            ),
        )

    @app_commands.command(
        name="set", description="Set a channel's defaults (members' /settings and given options win)"
    )
    @app_commands.describe(channel="The channel (default: this one)", **OPTIONS)
    async def set(
        self, interaction: Interaction, channel: discord.TextChannel | None = None,
        duration: contract.Duration | None = None, aspect_ratio: contract.AspectRatio | None = None,
        motion: contract.Motion | None = None, version: contract.Version | None = None,
    ) -> None:  # fmt: skip
        assert interaction.guild_id is not None
        where = channel.id if channel else interaction.channel_id
        assert where is not None
        try:
            defaults = await self.bot.services.moderation.set_channel_defaults(
                interaction.guild_id, interaction.user.id, where,
                OptionDefaults(duration, aspect_ratio, motion, version),
            )  # fmt: skip
        except InvalidOptions as exc:
            await tell(interaction, nothing_changed(exc))
            return
        await tell(
            interaction,
            say(
                "%(channel)s defaults: **%(defaults)s**.", channel=f"<#{where}>", defaults=describe(defaults)
            ),
        )

    @app_commands.command(name="clear", description="Remove a channel's default /animate options")
    async def clear(self, interaction: Interaction, channel: discord.TextChannel | None = None) -> None:
        assert interaction.guild_id is not None
        where = channel.id if channel else interaction.channel_id
        assert where is not None
        had = await self.bot.services.moderation.clear_channel_defaults(
            interaction.guild_id, interaction.user.id, where
        )
        text = (
            say("%(channel)s defaults: cleared.", channel=f"<#{where}>")
            if had
            else say("%(channel)s defaults: had none.", channel=f"<#{where}>")
        )
        await tell(interaction, text)


async def setup(bot: AnimateBot) -> None:
    bot.tree.add_command(SettingsGroup(bot))
    bot.tree.add_command(ChannelDefaultsGroup(bot))
