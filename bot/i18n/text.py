"""Deferred messages: what core code says to a member, rendered later in the member's language.

Core code (admission's refusals, the pipeline's card details, delivery's result message)
builds a :class:`Text` (a msgid and its parameters) instead of a finished English string; the
Discord face renders it in the member's ``interaction.locale``, delivery in the job's stored
locale, the mod log in the server's ``guild_locale``. ``str(text)`` is the English rendering,
so logs, the command line and assertions on English are unchanged.

The markers are :func:`say` and :func:`say_n` (Babel extracts their first arguments; see
``babel.cfg`` and ``make catalogues``). Not ``_``: this code base uses ``_`` as a throwaway
name (``for _ in ...``, ``name for name, _ in COLUMNS``), and a marker that is also a
variable would both shadow and be shadowed. Placeholders are Python's named ``%(name)s``, so
Babel flags them ``python-format`` and its checker proves every translation keeps them.

Parameters are formatted for the language when rendered: an ``int``, ``float`` or ``Decimal``
with ``babel.numbers`` (1,234 / 1.234), a ``timedelta`` with ``babel.dates`` (5 min /
5 mnt), a nested :class:`Text` in the same language. Ids (job ids, snowflakes in mentions)
are passed as strings so they are never grouped. Discord timestamps (``<t:...:R>``) stay
markup: Discord localizes them itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TypeAlias

from babel.dates import format_timedelta
from babel.numbers import format_decimal

from bot.i18n.catalogues import SOURCE_LANGUAGE, language, translations


@dataclass(frozen=True, slots=True)
class Text:
    """A message not rendered yet: ``msgid`` (English, with ``%(name)s`` placeholders), its
    parameters, and for a message that depends on a count, its plural and the count."""

    msgid: str
    params: Mapping[str, object] = field(default_factory=dict)
    plural: str | None = None
    count: int | None = None

    def render(self, locale: object = None) -> str:
        """The message in ``locale``'s language (a Discord locale, its string, or None: English)."""
        lang = language(locale)
        catalogue = translations(lang)
        if self.plural is not None and self.count is not None:
            template = catalogue.ngettext(self.msgid, self.plural, self.count)
        else:
            template = catalogue.gettext(self.msgid)
        if not self.params:
            return template
        return template % {name: _formatted(value, lang) for name, value in self.params.items()}

    def __str__(self) -> str:
        return self.render(SOURCE_LANGUAGE)


@dataclass(frozen=True, slots=True)
class Fixed:
    """A number shown with a fixed count of decimals (10.0 MiB, 10,0 MiB)."""

    value: float
    places: int = 1


@dataclass(frozen=True, slots=True)
class Joined:
    """Messages shown together (a card's detail: "#2 in the queue · 5 s elapsed"), each rendered
    in the same language; empty parts are left out."""

    parts: tuple[Message, ...]
    separator: str = " · "

    def render(self, locale: object = None) -> str:
        return self.separator.join(shown for part in self.parts if (shown := render(part, locale)))

    def __str__(self) -> str:
        return self.render(SOURCE_LANGUAGE)


# What a member can be shown: a deferred message, several, or a string that needs no
# translating (a prompt, an id, the API's own error text).
Message: TypeAlias = Text | Joined | str


def say(msgid: str, /, **params: object) -> Text:
    """Mark ``msgid`` for translation (Babel's extractor finds it) and defer its rendering."""
    return Text(msgid, params)


def say_n(singular: str, plural: str, count: int, /, **params: object) -> Text:
    """Like :func:`say`, for a message whose form depends on ``count`` (passed to the
    placeholders as ``count`` as well, unless given)."""
    return Text(singular, {"count": count, **params}, plural, count)


def join(*parts: Message, separator: str = " · ") -> Joined:
    return Joined(tuple(parts), separator)


def render(message: Message | None, locale: object = None) -> str:
    """``message`` in ``locale``'s language; a plain string is shown as it is."""
    if message is None:
        return ""
    if isinstance(message, str):
        return message
    return message.render(locale)


def number(value: float, locale: object = None, *, signed: bool = False) -> str:
    """``value`` as the language writes it (12,500 / 12.500); ``signed``: +20, -5."""
    shown = format_decimal(abs(value) if signed else value, locale=language(locale))
    return f"{'-' if value < 0 else '+'}{shown}" if signed else shown


def _formatted(value: object, lang: str) -> object:
    if isinstance(value, Text | Joined):
        return value.render(lang)
    if isinstance(value, Fixed):
        return format_decimal(value.value, format="#,##0." + "0" * value.places, locale=lang)
    if isinstance(value, bool):  # an int, but no number to format
        return str(value)
    if isinstance(value, int | float | Decimal):
        return format_decimal(value, locale=lang)
    if isinstance(value, timedelta):
        # One unit, rounded (12 sec, 2 min): a card or an Info line, not a stopwatch.
        return format_timedelta(value, locale=lang, threshold=1.1, format="short")
    return value


class TextError(Exception):
    """An error a member reads: :attr:`text`, rendered in their language by the face;
    ``str()`` is the English (logs, the command line)."""

    def __init__(self, text: Message) -> None:
        super().__init__(render(text))
        self.text = text
