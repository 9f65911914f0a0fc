"""The shipped catalogues: every message the code marks (and every string of the command tree)
is translated in every shipped language, keeps its placeholders, and the compiled .mo that
ships is the one its .po compiles to."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, LOCALE_DIR, number, say, say_n
from bot.i18n.catalogues import COMMAND_CONTEXT, DOMAIN

ROOT = Path(__file__).resolve().parents[2]
# The Makefile's `pybabel extract -k say -k say_n:1,2 -k pgettext:1c,2 --no-default-keywords`.
KEYWORDS = {"say": None, "say_n": (1, 2), "pgettext": ((1, "c"), 2)}
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]  # English is the msgids themselves


def extracted() -> dict[tuple[str | None, str], int]:
    """(msgctxt, msgid) of everything `make catalogues` extracts, from the source as it is now."""
    with open(ROOT / "babel.cfg") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[tuple[str | None, str], int] = {}
    for _file, _line, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        found[(context, msgid)] = found.get((context, msgid), 0) + 1
    return found


@pytest.fixture(scope="module")
def source_messages() -> dict[tuple[str | None, str], int]:
    return extracted()


def po(lang: str) -> Catalog:
    with open(LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as f:
        return read_po(f, locale=lang)


def test_the_source_has_messages_and_command_strings_to_translate(source_messages: dict) -> None:
    contexts = {context for context, _ in source_messages}
    assert (None, "⏳ Queued") in source_messages  # a marked message
    assert (COMMAND_CONTEXT, "animate") in source_messages  # a command name, from the tree
    assert (COMMAND_CONTEXT, "image_url") in source_messages  # a parameter name, from a signature
    assert contexts == {None, COMMAND_CONTEXT}


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_extracted_message_is_translated_and_not_fuzzy(lang: str, source_messages: dict) -> None:
    catalogue = po(lang)
    missing, untranslated, fuzzy = [], [], []
    for context, msgid in source_messages:
        message = next(
            (m for m in catalogue if (m.id[0] if isinstance(m.id, tuple) else m.id) == msgid
             and m.context == context),
            None,
        )  # fmt: skip
        if message is None:
            missing.append(msgid)
        elif not message.string or (isinstance(message.string, tuple) and not all(message.string)):
            untranslated.append(msgid)
        elif message.fuzzy:
            fuzzy.append(msgid)
    assert (missing, untranslated, fuzzy) == ([], [], []), "run `make catalogues` and translate"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_babels_checkers_pass_placeholders_and_plural_forms(lang: str) -> None:
    catalogue = po(lang)
    problems = [(m.id, [str(e) for e in errors]) for m, errors in catalogue.check() if errors]
    assert problems == []
    # The checker compares python-format placeholders only where the msgid is flagged so.
    assert any(m.python_format for m in catalogue if m.id)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_shipped_mo_is_what_its_po_compiles_to(lang: str) -> None:
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    compiled = io.BytesIO()
    write_mo(compiled, po(lang))
    compiled.seek(0)
    with open(folder / f"{DOMAIN}.mo", "rb") as shipped:
        ship = {(m.context, str(m.id)): str(m.string) for m in read_mo(shipped) if m.id}
    fresh = {(m.context, str(m.id)): str(m.string) for m in read_mo(compiled) if m.id}
    assert len(fresh) > 300  # every message is in it
    assert ship == fresh, "the .mo is stale: run `make catalogues` (its compile step)"


def test_every_shipped_language_renders_its_own_words() -> None:
    queued = say("⏳ Queued")
    assert queued.render("en-US") == str(queued) == "⏳ Queued"
    assert queued.render("id") == "⏳ Dalam antrean"
    assert queued.render("es-ES") == queued.render("es-419") == "⏳ En cola"
    assert queued.render("fr") == "⏳ Queued"  # not shipped: English


def test_numbers_are_formatted_for_the_language() -> None:
    needs = say(
        "The server's credit pool is too low: needs %(needs)s, pool has %(has)s. Ask an admin to top it up.",
        needs=12500,
        has=1250,
    )
    assert "needs 12,500, pool has 1,250" in needs.render("en-GB")
    assert "butuh 12.500, tersedia 1.250" in needs.render("id")
    assert "necesita 12.500, el fondo tiene 1.250" in needs.render("es-ES")


def test_a_signed_amount_keeps_its_sign_in_every_language() -> None:
    assert [number(-12500, lang, signed=True) for lang in ("en-US", "id", "es-419")] == [
        "-12,500",
        "-12.500",
        "-12.500",
    ]
    assert number(20, "id", signed=True) == "+20"


def test_plural_forms_follow_the_count() -> None:
    def running(n: int) -> str:
        return say_n(
            "You already have %(count)s animation running here, the most the %(plan)s plan allows at once.",
            "You already have %(count)s animations running here, the most the %(plan)s plan allows at once.",
            n,
            plan="Free",
        ).render("es-419")

    assert running(1).startswith("Ya tienes 1 animación en curso")
    assert running(2).startswith("Ya tienes 2 animaciones en curso")
