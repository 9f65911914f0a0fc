"""Command names, descriptions, options and choices in the member's language.

discord.py asks the tree's :class:`app_commands.Translator` for every name and description
(whether or not the cog wrapped it in ``locale_str``) when it builds the payload it syncs, and
publishes the answers as ``name_localizations`` and ``description_localizations``. Ours
answers from the message catalogues (:mod:`bot.i18n`), under the msgctxt ``command``.

The strings are not marked in the cogs: :mod:`bot.discord_adapter.command_strings`, a Babel
extraction method, walks the loaded command tree instead, so every string the bot publishes
reaches the template and none can be forgotten.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import discord
from discord import app_commands

from bot.i18n import COMMAND_CONTEXT, language, translations

log = logging.getLogger(__name__)

# What Discord accepts as a command, group or option name: ^[-_\p{L}\p{N}]{1,32}$, lowercase.
NAMES: Final = frozenset(
    {
        app_commands.TranslationContextLocation.command_name,
        app_commands.TranslationContextLocation.group_name,
        app_commands.TranslationContextLocation.parameter_name,
    }
)


# Discord's limit on a description or a choice's name (a name's, 32, is valid_name's).
MAX_TEXT: Final = 100


def valid_name(name: str) -> bool:
    """Discord's rule for a slash command's (or its option's) name in any locale."""
    return (
        0 < len(name) <= 32
        and name == name.lower()
        and all(ch in "-_" or ch.isalpha() or ch.isnumeric() for ch in name)
    )


class CatalogueTranslator(app_commands.Translator):
    """The command tree's text from ``locales/<lang>/LC_MESSAGES/bot.mo`` (msgctxt "command")."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContext[Any, Any],
    ) -> str | None:
        lang = language(locale)
        if lang == "en":
            return None
        found = translations(lang).pgettext(COMMAND_CONTEXT, string.message)
        if found == string.message:  # untranslated (or the same word): Discord shows the default
            return None
        is_name = context.location in NAMES
        # One bad name or overlong text would make Discord refuse the whole sync.
        if len(found) > MAX_TEXT:
            log.warning("%s: %r is too long in %s; left untranslated", context.location, found, lang)
            return None
        if is_name and not valid_name(found):
            log.warning(
                "%s: %r is no valid command name in %s; left untranslated", context.location, found, lang
            )
            return None
        return found
