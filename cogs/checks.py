"""Who may do what, as Discord says (checked in code too: a server can override the commands'
default permissions)."""

from __future__ import annotations

from typing import Any

import discord


def is_moderator(interaction: discord.Interaction[Any]) -> bool:
    """A member with Manage Server in the server the interaction comes from."""
    user = interaction.user
    return isinstance(user, discord.Member) and user.guild_permissions.manage_guild
