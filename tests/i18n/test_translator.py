"""The translator: command names, descriptions and choices from the catalogues, and every
translated name one Discord accepts."""

from __future__ import annotations

import re

import discord
import pytest
from discord import app_commands

from bot.discord_adapter.command_strings import command_strings, loaded_tree
from bot.discord_adapter.translator import CatalogueTranslator, valid_name

# Discord's rule for names (the \p classes spelled out for Python's re).
NAME = re.compile(r"^[-_\w]{1,32}$")
Location = app_commands.TranslationContextLocation


def context(location: Location) -> app_commands.TranslationContext:  # type: ignore[type-arg]
    return app_commands.TranslationContext(location, None)


@pytest.mark.parametrize("locale", [discord.Locale.indonesian, discord.Locale.spain_spanish])
async def test_every_name_of_the_tree_is_translated_into_a_name_discord_accepts(
    locale: discord.Locale,
) -> None:
    translator = CatalogueTranslator()
    tree = await loaded_tree()
    names = {
        text for what, text in command_strings(tree) if what in ("command name", "group name", "option name")
    }
    translated = {}
    for name in names:
        found = await translator.translate(
            app_commands.locale_str(name), locale, context(Location.command_name)
        )
        if found is not None:
            assert valid_name(found) and NAME.match(found) and found == found.lower(), found
            translated[name] = found
    # Nearly every name has a word of its own in both languages (some stay: "prompt", "audit").
    assert len(translated) > 0.8 * len(names)
    assert translated["animate"] == {"id": "animasikan", "es-ES": "animar"}[str(locale)]


async def test_descriptions_and_choices_are_translated_english_asks_nothing() -> None:
    translator = CatalogueTranslator()
    description = app_commands.locale_str("Animate a still image into a short video")
    at = context(Location.command_description)
    assert await translator.translate(description, discord.Locale.indonesian, at) == (
        "Ubah gambar diam menjadi video pendek"
    )
    assert await translator.translate(description, discord.Locale.latin_american_spanish, at) == (
        "Anima una imagen fija en un vídeo corto"
    )
    assert await translator.translate(description, discord.Locale.american_english, at) is None
    choice = app_commands.locale_str("medium")
    assert (
        await translator.translate(choice, discord.Locale.indonesian, context(Location.choice_name))
        == "sedang"
    )


@pytest.mark.parametrize("locale", [discord.Locale.indonesian, discord.Locale.latin_american_spanish])
async def test_every_description_and_choice_fits_discords_100_characters(locale: discord.Locale) -> None:
    translator = CatalogueTranslator()
    tree = await loaded_tree()
    at = context(Location.other)
    for what, text in command_strings(tree):
        found = await translator.translate(app_commands.locale_str(text), locale, at)
        if what == "description" and text != "…":  # discord.py's "no description"
            assert found is not None, text  # every description has its translation
        assert found is None or 0 < len(found) <= 100, found


def test_the_name_rule() -> None:
    assert valid_name("kanal-animasi") and valid_name("relación_aspecto") and valid_name("x" * 32)
    assert not valid_name("Animar") and not valid_name("dos palabras") and not valid_name("x" * 33)
    assert not valid_name("")
