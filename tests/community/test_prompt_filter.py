"""The prompt filter's matching: evasions seen through, no false alarms inside words, patterns
that cannot hang the bot, and rules that cannot be used refused with the reason."""

from __future__ import annotations

import pytest

from bot.community.prompt_filter import (
    PromptBlocked,
    PromptFilter,
    RuleError,
    check_rule,
    first_match,
    label,
    read_list,
)
from bot.store import PromptRule, Store, prompt_rules

WORDS = [
    PromptRule(1, "word", "goblin", 7),
    PromptRule(2, "word", "ass", 7),
    PromptRule(3, "word", "blood bath", 7),
]


@pytest.mark.parametrize(
    "prompt",
    [
        "a GOBLIN dances",  # case
        "a góblïn dances",  # accents
        "a ｇｏｂｌｉｎ dances",  # full-width
        "a gοbӏin dances",  # Greek omicron, Cyrillic palochka
        "a 𝔤𝔬𝔟𝔩𝔦𝔫 dances",  # mathematical letters
        "a g o b l i n dances",  # spaced out
        "a g.o.b.l.i.n dances",
        "a g-o-b-l-i-n dances",
        "a gooooblinnn dances",  # repeated letters
        "a_goblin_dances",
        "the ASS kicks",
        "a bloooood   baaath at dawn",  # a blocked phrase, with repeats and spacing
    ],
)
def test_each_evasion_is_seen_through(prompt: str) -> None:
    assert first_match(prompt, WORDS) is not None


@pytest.mark.parametrize("prompt", ["a class act", "an assassin walks", "hobgoblins", "bath of blood"])
def test_words_inside_other_words_are_left_alone(prompt: str) -> None:
    assert first_match(prompt, WORDS) is None


def test_a_pattern_matches_case_insensitively_on_the_cured_prompt() -> None:
    rule = PromptRule(9, "pattern", r"\bdra+gons?\b", 7)
    assert first_match("Two DRAAAGONS fly", [rule]) == rule
    assert first_match("Two ｄｒａｇｏｎｓ fly", [rule]) == rule
    assert first_match("a dragonfly", [rule]) is None


@pytest.mark.timeout(10)  # Python's re would take longer than the universe on this input
def test_a_catastrophic_backtracking_pattern_returns_at_once() -> None:
    rule = PromptRule(9, "pattern", check_rule("pattern", "(a+)+$"), 7)
    assert first_match("a" * 3_000 + "!", [rule]) is None
    assert first_match("a" * 3_000, [rule]) == rule


@pytest.mark.parametrize(
    ("kind", "text", "why"),
    [
        ("pattern", "(unclosed", r"does not compile: missing \)"),
        ("pattern", "a{1000}{1000}", "does not compile"),
        ("pattern", "(?<=look)behind", "does not compile"),  # RE2 has no lookbehind
        ("word", "   ", "empty"),
        ("word", "!!!", "no letters or digits"),
        ("word", "x" * 201, "at most 200 characters"),
        ("glob", "*", "unknown kind"),
    ],
)
def test_a_rule_that_cannot_be_used_is_refused_with_the_reason(kind: str, text: str, why: str) -> None:
    with pytest.raises(RuleError, match=why):
        check_rule(kind, text)


def test_the_bot_wide_list_reads_words_and_patterns_and_names_a_bad_line() -> None:
    rules = read_list(["# the owner's list", "", "goblin", "re:dra+gon", "  blood bath  "])
    assert [(r.kind, r.text, r.guild_id) for r in rules] == [
        ("word", "goblin", None), ("pattern", "dra+gon", None), ("word", "blood bath", None)
    ]  # fmt: skip
    with pytest.raises(RuleError, match=r"list.txt, line 2: the pattern does not compile"):
        read_list(["fine", "re:(bad"], "list.txt")


def test_a_refusal_names_the_rule_by_number_never_its_text() -> None:
    blocked = PromptBlocked(WORDS[0])
    assert "rule #1" in str(blocked) and "goblin" not in str(blocked)
    assert label(PromptRule(0, "word", "goblin")) == "the bot's own list"


async def test_the_filter_reads_the_servers_rules_and_the_bot_list(store: Store) -> None:
    prompt_filter = PromptFilter(store, read_list(["troll"]))
    await store.atomic(lambda tx: prompt_rules.add(tx, 7, "word", "goblin", 1))
    with pytest.raises(PromptBlocked, match="this server's rule #1"):
        await prompt_filter.check(7, "a goblin")
    await prompt_filter.check(8, "a goblin")  # another server's rules are not this one's
    with pytest.raises(PromptBlocked, match="the bot's own list"):
        await prompt_filter.check(None, "a troll in a DM")


@pytest.mark.parametrize(
    ("prompt", "blocked"),
    [("as they say", False), ("asss", True), ("a55", True), ("p0rtal", False), ("g0blin", True)],
)
def test_repeats_may_be_added_to_a_word_but_letters_not_left_out(prompt: str, blocked: bool) -> None:
    rules = [PromptRule(2, "word", "ass", 7), PromptRule(1, "word", "goblin", 7)]
    assert (first_match(prompt, rules) is not None) is blocked
