"""Who may do what, as Discord says (checked in code too: a server can override the commands'
default permissions), and where a command comes from (a server that installed the bot, or a
place it is not in)."""

from __future__ import annotations

from typing import Any

import discord

from bot.community.installs import Place, place_of


def is_moderator(interaction: discord.Interaction[Any]) -> bool:
    """A member with Manage Server in the server the interaction comes from."""
    user = interaction.user
    return isinstance(user, discord.Member) and user.guild_permissions.manage_guild


def place_here(interaction: discord.Interaction[Any]) -> Place:
    """Where the interaction comes from, by the user-install rule (bot.community.installs): a
    server pays only if it installed the app and the bot is in it (the bot's cache has it)."""
    guild_id = interaction.guild_id
    return place_of(
        guild_id,
        installed_by_guild=guild_id if interaction.is_guild_integration() else None,
        bot_is_member=guild_id is not None and interaction.client.get_guild(guild_id) is not None,
        private_channel=interaction.context.private_channel,
    )
