"""Each moderator operation is one transaction: the server's row, the change, the audit row."""

from __future__ import annotations

import pytest

from bot.community.admission import Policy, admit
from bot.community.moderation import Moderation, ModerationError
from bot.community.modlog import ModEvent
from bot.jobs import JobOptions
from bot.store import NewJob, Store, Tx, rules
from testkit.books import ledger_sum

G, MOD, MEMBER = 300, 9, 1
POLICY = Policy(welcome_credits=500)


class Scheduler:
    """The pause switch Moderation resumes (the real one lives in the pipeline)."""

    def __init__(self, pause_reason: str | None = None) -> None:
        self.pause_reason = pause_reason
        self.resumed = 0

    def resume(self) -> None:
        self.pause_reason = None
        self.resumed += 1


def moderation_of(store: Store, scheduler: Scheduler | None = None) -> Moderation:
    return Moderation(store, POLICY, scheduler or Scheduler())


async def test_a_change_on_a_server_with_no_row_creates_it_with_its_credits_and_audit(store: Store) -> None:
    await moderation_of(store).block_member(G, MOD, MEMBER, "spam")

    guild = await store.get_guild(G)
    assert guild is not None and guild.balance == 500 == await ledger_sum(store, G)
    assert [(r.kind, r.amount) for r in await store.ledger_rows(G)] == [("grant", 500)]
    rule = await store.member_rule(G, MEMBER)
    assert rule is not None and rule.blocked and rule.reason == "spam"
    assert [(r.actor_id, r.action, r.target, r.detail) for r in await store.audit_rows(G)] == [
        (MOD, "quota block", f"<@{MEMBER}>", "spam")
    ]


async def test_server_settings_on_a_new_server_are_kept_and_credited_once(store: Store) -> None:
    # Before, the cog had to create the row first or the setting silently changed nothing.
    await moderation_of(store).set_default_plan(G, MOD, "starter")
    await moderation_of(store).set_allowance(G, MOD, 60)
    guild = await moderation_of(store).topup(G, MOD, 100)

    assert guild.default_plan == "starter" and guild.daily_allowance == 60 and guild.balance == 600
    assert [r.kind for r in await store.ledger_rows(G)] == ["topup", "grant"]
    assert [(r.action, r.detail) for r in await store.audit_rows(G)] == [
        ("pool topup", "+100 -> 600"),
        ("pool allowance", "60 per member per 24 h"),
        ("quota default", "starter"),
    ]


async def test_a_change_that_fails_leaves_neither_the_change_nor_its_audit_nor_the_server_row(
    store: Store,
) -> None:
    def change_then_fail(tx: Tx) -> None:
        rules.set_member_rule(tx, G, MEMBER, blocked=1, reason="spam")
        raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError, match="the change fails"):
        await store.moderate(G, 500, MOD, "quota block", f"<@{MEMBER}>", "spam", change_then_fail)

    assert await store.member_rule(G, MEMBER) is None
    assert await store.audit_rows(G) == []
    assert await store.get_guild(G) is None and await ledger_sum(store, G) == 0


async def test_resume_calls_the_scheduler_and_audits_why_it_was_paused(store: Store) -> None:
    scheduler = Scheduler("API out of credits")
    moderation = moderation_of(store, scheduler)
    assert await moderation.resume_submitting(G, MOD) == "API out of credits"
    assert await moderation.resume_submitting(G, MOD) is None

    assert scheduler.resumed == 2
    assert [(r.action, r.detail) for r in await store.audit_rows(G)] == [
        ("pool resume", "not paused"),
        ("pool resume", "API out of credits"),
    ]


async def test_resume_in_a_follower_lifts_the_leaders_stored_pause(store: Store) -> None:
    # The leader (another process) paused submitting and wrote why; this process's own
    # scheduler is idle and knows nothing of it.
    await store.record_pause("API out of credits")
    follower = Scheduler()
    assert await moderation_of(store, follower).resume_submitting(G, MOD) == "API out of credits"

    assert await store.pause_reason() is None  # what the leader's scheduler looks at when woken
    assert [(r.action, r.detail) for r in await store.audit_rows(G)] == [
        ("pool resume", "API out of credits")
    ]
    assert await moderation_of(store, follower).resume_submitting(G, MOD) is None


async def test_a_resume_that_cannot_be_audited_does_not_happen(store: Store) -> None:
    scheduler = Scheduler("API out of credits")
    await store.close()  # the database is gone: the audit row cannot be written
    with pytest.raises(RuntimeError):
        await moderation_of(store, scheduler).resume_submitting(G, MOD)
    assert scheduler.resumed == 0 and scheduler.pause_reason == "API out of credits"


async def test_the_pool_statement_creates_the_row_on_first_look(store: Store) -> None:
    guild, rows = await moderation_of(store).pool_statement(G, limit=12)
    assert guild.balance == 500 and [(r.kind, r.amount) for r in rows] == [("grant", 500)]


async def test_filter_rules_are_added_numbered_audited_and_removed(store: Store) -> None:
    moderation = moderation_of(store)
    word = await moderation.add_prompt_rule(G, MOD, "word", "goblin")
    pattern = await moderation.add_prompt_rule(G, MOD, "pattern", r"dra+gons?")
    assert [(r.id, r.kind, r.text) for r in await moderation.prompt_rules(G)] == [
        (word.id, "word", "goblin"), (pattern.id, "pattern", r"dra+gons?")
    ]  # fmt: skip
    assert await moderation.test_prompt(G, "two DRAAGONS") == pattern
    assert await moderation.test_prompt(G, "a quiet sea") is None
    assert (await moderation.remove_prompt_rule(G, MOD, word.id)).text == "goblin"
    assert await moderation.test_prompt(G, "a goblin") is None
    assert [(r.action, r.detail) for r in await store.audit_rows(G)][:3] == [
        ("filter remove", f"word rule #{word.id}"),
        ("filter add", f"pattern rule #{pattern.id}"),
        ("filter add", f"word rule #{word.id}"),
    ]


@pytest.mark.parametrize(
    ("kind", "text", "why"),
    [("pattern", "(?<=x)y", "does not compile"), ("word", "goblin", "already blocks that word")],
)
async def test_a_filter_rule_that_cannot_be_added_changes_nothing(
    store: Store, kind: str, text: str, why: str
) -> None:
    moderation = moderation_of(store)
    await moderation.add_prompt_rule(G, MOD, "word", "goblin")
    before = await store.audit_rows(G)
    with pytest.raises(ModerationError, match=why):
        await moderation.add_prompt_rule(G, MOD, kind, text)
    with pytest.raises(ModerationError, match="no filter rule #99"):
        await moderation.remove_prompt_rule(G, MOD, 99)
    assert await store.audit_rows(G) == before and len(await moderation.prompt_rules(G)) == 1


class Sink:
    """The mod log's Discord side, recorded."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, ModEvent]] = []

    async def post(self, channel_id: int, event: ModEvent) -> None:
        self.posts.append((channel_id, event))


async def test_with_a_mod_log_every_audited_change_is_posted_there_too(store: Store) -> None:
    sink = Sink()
    moderation = Moderation(store, POLICY, Scheduler(), modlog=sink)
    await moderation.block_member(G, MOD, MEMBER, "spam")  # no mod log yet: audited only
    await moderation.set_modlog(G, MOD, 555)
    await moderation.topup(G, MOD, 100)
    await moderation.add_prompt_rule(G, MOD, "word", "goblin")
    await moderation.set_modlog(G, MOD, None)
    await moderation.unblock_member(G, MOD, MEMBER)  # off again: audited only
    assert [(channel, e.action, e.actor_id, e.detail) for channel, e in sink.posts] == [
        (555, "modlog", MOD, "on"),
        (555, "pool topup", MOD, "+100 -> 600"),
        (555, "filter add", MOD, "word rule #1"),
    ]
    assert len(await store.audit_rows(G)) == 6


async def test_recent_usage_is_every_day_of_the_span_and_the_busiest_members(store: Store) -> None:
    policy = Policy(default_plan="pro", welcome_credits=500)
    for user in (1, 1, 2):
        new = NewJob(source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"),
                     user_id=user, guild_id=G, channel_id=3)  # fmt: skip
        await admit(store, new, policy)  # gen-4: 50 credits each
    usage = await Moderation(store, policy, Scheduler()).recent_usage(G)
    assert len(usage.per_day) == 30 and usage.per_day[-1][1] == 3 * 50  # today, last
    assert all(credits == 0 for _, credits in usage.per_day[:-1])
    assert usage.per_member == [(1, 2), (2, 1)]
