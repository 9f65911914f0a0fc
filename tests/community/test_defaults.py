"""Which options an /animate gets for those left out: given, then the member's, then the
channel's, then the bot's; and what a default may be set to."""

from __future__ import annotations

import pytest

from bot.community.defaults import check, choose, describe
from bot.jobs import InvalidOptions
from bot.store import OptionDefaults, Store

NONE = OptionDefaults()


def test_each_option_comes_from_the_highest_level_that_sets_it() -> None:
    given = OptionDefaults(duration=10)
    mine = OptionDefaults(duration=5, motion="high", version="gen-3")
    channel = OptionDefaults(aspect_ratio="9:16", motion="low", version="gen-2")
    options = choose("waves", given, mine, channel)
    assert (options.duration, options.aspect_ratio, options.motion, options.version) == (
        10,
        "9:16",
        "high",
        "gen-3",
    )
    bare = choose("waves", NONE, NONE, NONE)
    assert (bare.duration, bare.aspect_ratio, bare.motion, bare.version) == (5, "16:9", "medium", "gen-4")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (OptionDefaults(duration=7), "duration 7 is not one of 5, 10"),
        (OptionDefaults(version="gen-9"), "version 'gen-9'"),
        (NONE, "at least one option"),
    ],
)
def test_a_default_the_api_would_refuse_is_not_kept(changes: OptionDefaults, why: str) -> None:
    with pytest.raises(InvalidOptions, match=why):
        check(changes)


def test_defaults_read_as_a_member_sees_them() -> None:
    assert str(describe(OptionDefaults(duration=10, motion="high"))) == "10 s · motion high"
    assert str(describe(NONE)) == "none"


async def test_setting_some_options_keeps_the_others_and_clearing_forgets_all(store: Store) -> None:
    await store.set_member_defaults(1, OptionDefaults(duration=10, version="gen-3"))
    kept = await store.set_member_defaults(1, OptionDefaults(motion="high"))
    assert kept == OptionDefaults(duration=10, motion="high", version="gen-3")
    assert await store.option_defaults(1, None) == (kept, NONE)
    assert await store.clear_member_defaults(1) is True
    assert await store.option_defaults(1, None) == (NONE, NONE)
