"""The bot's languages: gettext catalogues (managed with Babel) and deferred messages.

No discord import: this is the bottom layer beside :mod:`bot.jobs` and :mod:`bot.config`, so
every layer above can say something to a member without rendering it. The Discord side
(:mod:`bot.discord_adapter.translator`) reads the same catalogues for command names.
"""

from bot.i18n.catalogues import COMMAND_CONTEXT, LANGUAGES, LOCALE_DIR, language, translations
from bot.i18n.text import Fixed, Joined, Message, Text, TextError, join, number, render, say, say_n

__all__ = [
    "COMMAND_CONTEXT",
    "LANGUAGES",
    "LOCALE_DIR",
    "Fixed",
    "Joined",
    "Message",
    "Text",
    "TextError",
    "join",
    "language",
    "number",
    "render",
    "say",
    "say_n",
    "translations",
]
