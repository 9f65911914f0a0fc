"""The compiled catalogues shipped in the package, and which one a Discord locale reads.

English is the source language: the msgids are the English text, so English needs no
catalogue. Every other language is ``locales/<lang>/LC_MESSAGES/bot.po`` (edited, merged with
``make catalogues``) beside its compiled ``bot.mo`` (what is loaded; committed and shipped as
package data, so a non-editable install speaks every language too).
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path
from typing import Final

from babel.support import Translations

DOMAIN: Final = "bot"
LOCALE_DIR: Final = Path(__file__).parent / "locales"
SOURCE_LANGUAGE: Final = "en"
# The shipped languages. A Discord locale maps to its language ("es-ES" and "es-419": "es");
# one we do not ship, or none, reads English.
LANGUAGES: Final = ("en", "id", "es")
# Command names, descriptions and choices (the translator's) are kept apart from messages by
# this msgctxt: "cancel" the command may need another word than a "Cancel" button.
COMMAND_CONTEXT: Final = "command"


def language(locale: object) -> str:
    """The shipped language for a Discord locale (``discord.Locale`` or its string):
    ``en-US``/``en-GB`` -> en, ``id`` -> id, ``es-ES``/``es-419`` -> es, anything else -> en."""
    tag = str(locale or "").replace("_", "-").split("-")[0].lower()
    return tag if tag in LANGUAGES else SOURCE_LANGUAGE


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``lang``, loaded once; English (and a language with no
    catalogue) answers every msgid with itself."""
    if lang == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    return Translations.load(str(LOCALE_DIR), [lang], domain=DOMAIN)
