"""Who pays for a command used where the bot is not: the rule for user installs.

A member can install the app for themselves and use /animate (and "Animate this image") in any
server or group DM, even one the bot is not in. Discord then says who authorized the command
(``authorizing_integration_owners``): the server ("0": its id) when the server installed the
app, the member ("1": their id) when they did.

The rule: a command the server did not authorize, or used in a server the bot is not a member
of, is the member's own, as in a DM with the bot: the bot-wide default plan, windows shared with
their DMs and other user-installed uses, and no server's pool, rules or blocks; never the pool of
a server that did not install the bot, even one with a pool row from an earlier stay. The same
goes for a group DM (the bot is never in one). The bot cannot post there either: the result comes
through the interaction while its token lives (15 minutes), then by DM.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Place:
    """Where a command was used, as admission and delivery need it."""

    guild_id: int | None  # the server whose plan, rules and pool apply (None: the member's own)
    asked_in_guild_id: int | None  # the server it was used in, for display (also when it pays not)
    user_install: bool  # the bot is not there: paid like a DM, answered by token, then by DM


def place_of(
    guild_id: int | None, *, installed_by_guild: int | None, bot_is_member: bool, private_channel: bool
) -> Place:
    """The place of a command used in ``guild_id`` (None: a DM or group DM).

    ``installed_by_guild``: the guild owner Discord named ("0" of the authorizing owners; None
    when the server did not authorize it). ``bot_is_member``: the bot is in that server.
    ``private_channel``: a group DM (Discord's context 2), where the bot never is.
    """
    if guild_id is None:
        return Place(None, None, user_install=private_channel)
    if installed_by_guild == guild_id and bot_is_member:
        return Place(guild_id, guild_id, user_install=False)
    return Place(None, guild_id, user_install=True)
