"""What a new /animate reads before its picture, in one store call: the member's and the
channel's default options, the server's prompt rules, whether the channel's results come as
spoilers. On every engine (PostgreSQL sends the three statements in one round trip)."""

from __future__ import annotations

from collections.abc import Callable

from bot.store import OptionDefaults, Store, Tx, option_defaults, pools, prompt_rules, rules
from bot.store.option_defaults import CHANNEL

GUILD, CHANNEL_ID, OTHER_CHANNEL, MEMBER_ID, MODERATOR = 7, 70, 71, 1, 2


async def moderate(store: Store, action: str, change: Callable[[Tx], object]) -> None:
    """A moderator's change as the commands make it (the server's row first)."""
    await store.moderate(GUILD, 0, MODERATOR, action, None, "test", change)


async def test_one_call_reads_the_defaults_the_server_rules_and_the_spoiler_setting(store: Store) -> None:
    await store.set_member_defaults(MEMBER_ID, OptionDefaults(duration=10))
    await moderate(
        store, "defaults",
        lambda tx: option_defaults.merge(tx, CHANNEL, CHANNEL_ID, OptionDefaults(motion="high"), MODERATOR),
    )  # fmt: skip
    await moderate(store, "rule", lambda tx: prompt_rules.add(tx, GUILD, "word", "goblin", MODERATOR))
    await moderate(store, "spoiler", lambda tx: rules.set_spoiler(tx, GUILD, CHANNEL_ID, True))

    here = await store.request_setting(MEMBER_ID, GUILD, CHANNEL_ID, age_restricted=False, defaults=True)
    assert (here.mine, here.channel) == (OptionDefaults(duration=10), OptionDefaults(motion="high"))
    assert [r.text for r in here.prompt_rules] == ["goblin"]
    assert here.spoiler

    elsewhere = await store.request_setting(
        MEMBER_ID, GUILD, OTHER_CHANNEL, age_restricted=False, defaults=True
    )
    assert (elsewhere.mine, elsewhere.channel) == (OptionDefaults(duration=10), OptionDefaults())
    assert [r.text for r in elsewhere.prompt_rules] == ["goblin"] and not elsewhere.spoiler

    # Every option given: the defaults are not read (the rules and the spoiler still are).
    given = await store.request_setting(MEMBER_ID, GUILD, CHANNEL_ID, age_restricted=False, defaults=False)
    assert (given.mine, given.channel) == (OptionDefaults(), OptionDefaults()) and given.spoiler


async def test_age_restricted_channels_are_spoiled_only_when_the_server_says_so(store: Store) -> None:
    asked = {"age_restricted": True, "defaults": False}
    assert not (await store.request_setting(MEMBER_ID, GUILD, CHANNEL_ID, **asked)).spoiler
    await moderate(store, "age", lambda tx: pools.update(tx, GUILD, spoil_age_restricted=1))
    assert (await store.request_setting(MEMBER_ID, GUILD, CHANNEL_ID, **asked)).spoiler
    plain = await store.request_setting(MEMBER_ID, GUILD, CHANNEL_ID, age_restricted=False, defaults=False)
    assert not plain.spoiler


async def test_a_direct_message_has_no_server_rules_and_no_spoiler(store: Store) -> None:
    await store.set_member_defaults(MEMBER_ID, OptionDefaults(version="gen-3"))
    await moderate(store, "rule", lambda tx: prompt_rules.add(tx, GUILD, "word", "goblin", MODERATOR))
    dm = await store.request_setting(MEMBER_ID, None, None, age_restricted=False, defaults=True)
    assert dm.mine == OptionDefaults(version="gen-3") and dm.prompt_rules == () and not dm.spoiler
