"""Every string of the command tree the translator is asked for, for the catalogues.

:func:`extract_commands` is a Babel extraction method (``babel.cfg``, ``make catalogues``): it
loads the bot's extensions into a client that never connects and walks the tree, so every
name, description, option and choice the bot publishes reaches the template (under msgctxt
"command"), parameter names (a function's arguments) included, with nothing to mark by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import IO, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_adapter.client import EXTENSIONS
from bot.i18n import COMMAND_CONTEXT


def command_strings(tree: app_commands.CommandTree[Any]) -> Iterator[tuple[str, str]]:
    """Every (what, text) of the tree the translator is asked for: names, descriptions, choices."""
    for command in tree.get_commands():
        yield from _strings_of(command)


def _strings_of(command: Any) -> Iterator[tuple[str, str]]:
    if isinstance(command, app_commands.ContextMenu):
        yield "context menu name", command.name
        return
    group = isinstance(command, app_commands.Group)
    yield ("group name" if group else "command name"), command.name
    yield "description", command.description
    if group:
        for sub in command.commands:
            yield from _strings_of(sub)
        return
    for parameter in command.parameters:
        yield "option name", parameter.name
        yield "description", parameter.description
        for choice in parameter.choices:
            if any(ch.isalpha() for ch in choice.name):  # "5" and "16:9" need no words
                yield "choice", choice.name


async def loaded_tree() -> app_commands.CommandTree[Any]:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none(), help_command=None)
    for extension in EXTENSIONS:
        await bot.load_extension(extension)
    return bot.tree


def extract_commands(
    fileobj: IO[bytes], keywords: Any, comment_tags: Any, options: Any
) -> Iterator[tuple[int, str, tuple[str, str], list[str]]]:
    """Babel extraction method: the loaded command tree's strings as ``pgettext("command", ...)``.

    Babel calls it for this file (``babel.cfg``); the file's content is not read. A name's
    comment reminds the translator of Discord's rule for names."""
    tree = asyncio.run(loaded_tree())
    for what, text in command_strings(tree):
        if not text or text == "…":  # discord.py's placeholder for "no description"
            continue
        note = f"{what}: lowercase, no spaces, at most 32 letters, digits, - or _" if "name" in what else what
        if what == "context menu name":
            note = "context menu name: up to 32 characters, spaces allowed"
        yield 1, "pgettext", (COMMAND_CONTEXT, text), [note]
