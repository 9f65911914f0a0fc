"""The prompt filter: words and patterns a server (or the bot's owner) will not animate.

A prompt is checked before anything is read, written or charged. Matching sees through the
simple evasions:

- case, accents, font and look-alike characters (``ｆück``, ``ƒυcκ``, Cyrillic ``ѕех``): the
  prompt is decomposed (NFKD, accents dropped) and "cured" by decancer, a kept library built on
  Unicode's confusables, so there is no hand-made table here;
- characters that still look alike once cured (``l``, ``i`` and ``1``; ``o`` and ``0``): a letter
  of a blocked word matches whatever decancer calls similar to it;
- repeated letters (``fuuuuck``): each letter of a blocked word may be repeated, but not left
  out, so blocking "ass" leaves "as" alone;
- spacing (``f u c k``, ``f.u.c.k``, ``f-u-c-k``): a run of single letters between separators is
  read as one word, and a blocked word anywhere inside it counts.

Words match whole words (or a run of whole words, for a blocked phrase), so blocking "ass"
leaves "class" and "assassin" alone. Patterns are the moderators' own regular expressions, run
by RE2 (google-re2) in time linear in the prompt, so no pattern can hang the bot; they see the
cured prompt with its spacing, and are matched case-insensitively.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Final

import decancer_py
import re2

from bot.community.admission import Refused
from bot.i18n import Text, TextError, say
from bot.store import PromptRule as Rule
from bot.store import Store

MAX_RULE_CHARS: Final = 200
MAX_PROMPT_CHARS: Final = 4_000  # what is checked (the API's own limit is lower)
_RE2_MEMORY: Final = 1 << 20  # bytes a compiled pattern may use: a huge one is refused, not built

_SEPARATORS: Final = re.compile(r"[\W_]+")  # between words: anything not a letter or digit
_RUNS: Final = re.compile(r"(.)\1*")
_MAX_WORD: Final = 64  # longer "words" (no separators at all) are not compared letter by letter
_ASCII: Final = "abcdefghijklmnopqrstuvwxyz0123456789"


class RuleError(TextError, ValueError):
    """A rule that cannot be used; the message says why, for the moderator (or the operator,
    for the bot's own list)."""


def rule_name(rule: Rule) -> Text:
    """:func:`label` for a member, in their language."""
    if rule.guild_id is None:
        return say("the bot's own list")
    return say("this server's rule #%(number)s", number=str(rule.id))


def label(rule: Rule) -> str:
    """How a refusal names a rule: never its text (that would teach the way around it)."""
    return "the bot's own list" if rule.guild_id is None else f"this server's rule #{rule.id}"


class PromptBlocked(Refused):
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        which = rule_name(rule)
        super().__init__(
            say(
                "Your prompt matches %(rule)s of words and patterns not to animate. "
                "Nothing was started or charged; change the wording and try again.",
                rule=which,
            )
        )


class PromptFilter:
    """The bot-wide list (from the owner's file) and each server's rules (from the store)."""

    def __init__(self, store: Store, bot_rules: Sequence[Rule] = ()) -> None:
        self.store = store
        self.bot_rules = tuple(bot_rules)

    async def check(self, guild_id: int | None, prompt: str) -> None:
        """Raise :class:`PromptBlocked` if ``prompt`` breaks a rule; writes nothing either way.
        The server's rules are read each time (one small read), so a rule added in another
        process counts at once; compiled patterns are cached by their text."""
        self.judge(prompt, await self.store.prompt_rules(guild_id) if guild_id is not None else [])

    def judge(self, prompt: str, server_rules: Sequence[Rule]) -> None:
        """:meth:`check` with the server's rules already read (a new job reads them together
        with its other settings: :meth:`bot.store.Store.request_setting`)."""
        broken = first_match(prompt, [*self.bot_rules, *server_rules])
        if broken is not None:
            raise PromptBlocked(broken)


def cure(text: str) -> str:
    """``text`` lowercased, with look-alike, accented and styled characters as plain ones."""
    # Accents first, by Unicode's own decomposition: decancer 0.4.1 cures some accented
    # letters to the wrong one (ó to p, ô to q).
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return str(decancer_py.parse(bare))


def words_of(text: str) -> list[str]:
    """The cured words of ``text``, with each run of single letters joined into one."""
    return _read(text)[0]


def _read(text: str) -> tuple[list[str], list[str]]:
    """The cured words, and the runs of single letters among them ("a f u c k" -> "afuck")."""
    words = [w for w in _SEPARATORS.split(cure(text)) if w]
    joined: list[str] = []
    runs: list[str] = []
    spelled: list[str] = []  # single letters in a row: "f u c k"
    for word in [*words, ""]:
        if len(word) == 1:
            spelled.append(word)
            continue
        if len(spelled) > 1:
            runs.append("".join(spelled))
            joined.append(runs[-1])
        elif spelled:
            joined.append(spelled[0])
        spelled = []
        if word:
            joined.append(word)
    return joined, runs


@functools.lru_cache(maxsize=64)
def _alike(char: str) -> str:
    """``char`` and the letters and digits decancer calls similar to it, as a regex class."""
    cured = decancer_py.parse(char)
    return "[" + re.escape("".join({char, *(c for c in _ASCII if cured == c)})) + "]"


@functools.lru_cache(maxsize=4096)
def _word_pattern(word: str) -> re.Pattern[str]:
    """A blocked word as a pattern: each letter, or one alike, once or more. Built here from
    the cured word (never a user's regex), over short words only: ``re`` is safe on it."""
    return re.compile("".join(f"{_alike(m[1])}{{{len(m[0])},}}" for m in _RUNS.finditer(word)))


def check_rule(kind: str, text: str) -> str:
    """The rule's text as it is kept, or :class:`RuleError` saying why it cannot be used."""
    text = text.strip()
    if not text:
        raise RuleError(say("the rule is empty"))
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(say("a rule may be at most %(limit)s characters", limit=MAX_RULE_CHARS))
    if kind == "word":
        if not words_of(text):
            raise RuleError(say("the word has no letters or digits to match"))
        return text
    if kind == "pattern":
        _compiled(text)
        return text
    raise RuleError(say("unknown kind of rule %(kind)s: word or pattern", kind=repr(kind)))


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = _RE2_MEMORY
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        why = exc.args[0] if exc.args else "unknown error"
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise RuleError(say("the pattern does not compile: %(why)s", why=why)) from None


@functools.lru_cache(maxsize=4096)
def _blocked_words(text: str) -> tuple[re.Pattern[str], ...]:
    return tuple(_word_pattern(w) for w in words_of(text))


class Prompt:
    """One prompt, prepared once for every rule it is checked against."""

    def __init__(self, text: str) -> None:
        text = text[:MAX_PROMPT_CHARS]
        self.cured = cure(text)
        words, self.spelled = _read(text)
        self.words = tuple(w for w in words if len(w) <= _MAX_WORD)

    def matches(self, rule: Rule) -> bool:
        if rule.kind == "pattern":
            return _compiled(rule.text).search(self.cured) is not None
        blocked = _blocked_words(rule.text)
        n = len(blocked)
        if n == 1 and any(blocked[0].search(run) for run in self.spelled):  # "a b i t c h" spelled out
            return True
        return n > 0 and any(
            all(pattern.fullmatch(word) for pattern, word in zip(blocked, self.words[i : i + n], strict=True))
            for i in range(len(self.words) - n + 1)
        )


def first_match(prompt: str, rules: Iterable[Rule]) -> Rule | None:
    """The first rule ``prompt`` breaks, or None."""
    prepared = Prompt(prompt)
    return next((rule for rule in rules if prepared.matches(rule)), None)


def read_list(lines: Sequence[str], source: str = "the list") -> list[Rule]:
    """The bot-wide list's rules from its file's lines: one per line, ``re:`` before a pattern,
    ``#`` starts a comment line; a bad line is a :class:`RuleError` naming it."""
    rules = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, text = ("pattern", line[3:]) if line.startswith("re:") else ("word", line)
        try:
            rules.append(Rule(0, kind, check_rule(kind, text), guild_id=None))
        except RuleError as exc:
            raise RuleError(f"{source}, line {number}: {exc}") from None
    return rules
