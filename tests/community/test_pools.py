"""Plans by role and override, blocks, channel rules, and the credit pool's ledger."""

from __future__ import annotations

import pytest

from bot.community.admission import (
    AllowanceShort,
    Blocked,
    ChannelClosed,
    Policy,
    PoolShort,
    QuotaExceeded,
    admit,
)
from bot.community.plans import resolve
from bot.jobs import JobOptions, JobState
from bot.store import NewJob, Store, pools, rules
from testkit.books import ledger_sum

G, CHAN = 100, 7
POLICY = Policy(default_plan="pro", welcome_credits=500)


def ask(user: int = 1, *, version: str = "gen-4", channel: int = CHAN, guild: int | None = G) -> NewJob:
    return NewJob(source="discord", image_ref="https://cdn/x.png",
                  options=JobOptions(prompt="p", version=version),
                  user_id=user, guild_id=guild, channel_id=channel)  # fmt: skip


async def balanced(store: Store) -> int:
    guild = await store.get_guild(G)
    assert guild is not None
    assert guild.balance == await ledger_sum(store, G) >= 0
    return guild.balance


async def run_to(store: Store, job_id: str, end: JobState, cost: int | None = None) -> None:
    await store.transition(job_id, JobState.SUBMITTING)
    await store.transition(job_id, JobState.PROCESSING, api_job_id=f"a-{job_id}", actual_credits=cost)
    await store.transition(job_id, end, actual_credits=cost)


async def test_reserve_settle_refund_and_never_twice(store: Store) -> None:
    a = (await admit(store, ask(1), POLICY)).job  # gen-4: 50
    b = (await admit(store, ask(2), POLICY)).job
    c = (await admit(store, ask(3), POLICY)).job
    assert await balanced(store) == 500 - 150
    await run_to(store, a.id, JobState.COMPLETED, cost=40)  # the API charged less: 10 back
    await run_to(store, b.id, JobState.FAILED, cost=0)  # refunded in full
    await store.transition(c.id, JobState.CANCELLED)  # refunded in full
    assert await balanced(store) == 500 - 40
    for job_id in (a.id, b.id):  # a duplicate report of the same end changes nothing
        with pytest.raises(Exception):  # noqa: B017 - IllegalTransition
            await store.transition(job_id, JobState.COMPLETED, actual_credits=1)
    await store.transition(a.id, JobState.DELIVERED)
    assert await balanced(store) == 460
    kinds = [r.kind for r in await store.ledger_rows(G, limit=20)]
    assert kinds.count("reserve") == 3 and kinds.count("settle") == 3 and kinds.count("grant") == 1


async def test_pool_short_says_the_numbers_and_writes_nothing(store: Store) -> None:
    await store.ensure_guild(G, 0)
    await store.atomic(lambda tx: pools.topup(tx, G, 50, actor_id=9))
    with pytest.raises(PoolShort, match="needs 100, pool has 50"):
        big = JobOptions(prompt="p", duration=10)
        await admit(store, NewJob(source="discord", image_ref="u", options=big, user_id=1, guild_id=G,
                                  channel_id=CHAN), POLICY)  # fmt: skip
    assert await store.jobs_in_states(JobState) == []
    assert await balanced(store) == 50


async def test_allowance_per_member_per_day(store: Store) -> None:
    await store.ensure_guild(G, 500)
    await store.atomic(lambda tx: pools.update(tx, G, daily_allowance=60))
    first = (await admit(store, ask(1), POLICY)).job  # 50 of 60
    with pytest.raises(AllowanceShort, match="needs 50, you have 10 of 60"):
        await admit(store, ask(1), Policy(default_plan="enterprise", welcome_credits=500))
    assert (await admit(store, ask(2), POLICY)).job  # another member has their own allowance
    await run_to(store, first.id, JobState.FAILED, cost=0)  # given back
    assert (await admit(store, ask(1), POLICY)).job


async def test_low_balance_alert_once_per_crossing(store: Store) -> None:
    await store.ensure_guild(G, 300)
    await store.atomic(lambda tx: pools.update(tx, G, low_balance_threshold=200, alert_channel_id=55))
    seen = [(await admit(store, ask(u), Policy(default_plan="enterprise"))).low_balance for u in range(1, 5)]
    # 300 -> 250 -> 200 -> 150 (crosses: alert) -> 100 (already below: quiet)
    assert [g is not None for g in seen] == [False, False, True, False]
    assert seen[2] is not None and seen[2].balance == 150 and seen[2].alert_channel_id == 55
    await store.atomic(lambda tx: pools.topup(tx, G, 500, actor_id=9))  # back above the line: armed again
    again = [
        (await admit(store, ask(u), Policy(default_plan="enterprise"))).low_balance for u in range(5, 14)
    ]
    assert sum(g is not None for g in again) == 1
    await balanced(store)


async def test_blocked_member_and_channel_rules(store: Store) -> None:
    await store.ensure_guild(G, 500)
    await store.atomic(lambda tx: rules.set_member_rule(tx, G, 1, blocked=1, reason="spam"))
    with pytest.raises(Blocked, match="spam"):
        await admit(store, ask(1), POLICY)
    await store.atomic(lambda tx: rules.set_member_rule(tx, G, 1, blocked=0, reason=None))
    assert await admit(store, ask(1), POLICY)
    await store.atomic(lambda tx: rules.set_channel_rule(tx, G, 8, allowed=False))
    with pytest.raises(ChannelClosed):
        await admit(store, ask(2, channel=8), POLICY)
    assert await admit(store, ask(2, channel=CHAN), POLICY)  # no allow list yet: others open
    # An allow list now exists: only 9.
    await store.atomic(lambda tx: rules.set_channel_rule(tx, G, 9, allowed=True))
    with pytest.raises(ChannelClosed):
        await admit(store, ask(3, channel=CHAN), POLICY)
    assert await admit(store, ask(3, channel=9), POLICY)
    assert len(await store.jobs_in_states(JobState)) == 3


def test_best_role_wins_and_override_beats_roles() -> None:
    roles = {11: "starter", 12: "pro", 13: "free"}
    assert resolve(bot_default="free", role_plans=roles, member_roles=[11, 13]).plan.name == "starter"
    assert resolve(bot_default="free", role_plans=roles, member_roles=[11, 12, 13]).plan.name == "pro"
    assert (
        resolve(bot_default="free", role_plans=roles, member_roles=[12], override="free").plan.name == "free"
    )
    assert resolve(bot_default="free", server_default="starter", member_roles=[99]).why == "server default"
    assert resolve(bot_default="starter").plan.concurrent_jobs == 3


async def test_role_plan_and_override_drive_the_limits(store: Store) -> None:
    free = Policy(default_plan="free", welcome_credits=10_000)
    await admit(store, ask(1, version="gen-2"), free)
    with pytest.raises(QuotaExceeded, match="Free plan"):
        await admit(store, ask(1, version="gen-2"), free)
    await store.atomic(lambda tx: rules.set_role_plan(tx, G, 42, "starter"))  # Starter: 3 at once
    for _ in range(2):
        await admit(store, ask(1, version="gen-2"), free, roles=[42])
    with pytest.raises(QuotaExceeded, match="Starter plan"):
        await admit(store, ask(1, version="gen-2"), free, roles=[42])
    await store.atomic(lambda tx: rules.set_member_rule(tx, G, 1, plan="free"))  # the override beats the role
    with pytest.raises(QuotaExceeded, match="Free plan"):
        await admit(store, ask(1, version="gen-2"), free, roles=[42])


async def test_quota_reset_starts_windows_afresh(store: Store) -> None:
    policy = Policy(default_plan="free", welcome_credits=10_000)
    job = (await admit(store, ask(1, version="gen-2"), policy, now=1000.0)).job
    await run_to(store, job.id, JobState.COMPLETED, cost=10)
    for i in range(9):
        j = (await admit(store, ask(1, version="gen-2"), policy, now=1001.0 + i)).job
        await run_to(store, j.id, JobState.COMPLETED, cost=10)
    with pytest.raises(QuotaExceeded, match="last minute"):
        await admit(store, ask(1, version="gen-2"), policy, now=1020.0)
    await store.atomic(lambda tx: rules.set_member_rule(tx, G, 1, reset_at=1015.0))
    assert await admit(store, ask(1, version="gen-2"), policy, now=1020.0)


async def test_dm_jobs_touch_no_pool(store: Store) -> None:
    assert (await admit(store, ask(1, guild=None), POLICY)).job.guild_id is None
    assert await store.get_guild(G) is None


async def test_a_job_cancelled_while_the_api_renders_it_pays_what_the_api_bills(store: Store) -> None:
    # The API has no cancel call: a job it had started runs to its end and is billed. Its pool
    # pays that, settled when the API's end is seen; a job cancelled before it reached the
    # API is refunded at once.
    queued = (await admit(store, ask(1), POLICY)).job  # gen-4: 50 each
    finished = (await admit(store, ask(2), POLICY)).job
    failed = (await admit(store, ask(3), POLICY)).job
    for job in (finished, failed):
        await store.transition(job.id, JobState.SUBMITTING)
        await store.transition(job.id, JobState.PROCESSING, api_job_id=f"a-{job.id}", actual_credits=50)
    for job in (queued, finished, failed):
        await store.transition(job.id, JobState.CANCELLED)
    assert await balanced(store) == 500 - 100  # the queued one back; the other two await the API

    ended = {j.id: j for j in await store.jobs_in_states([JobState.CANCELLED])}
    assert await store.mark_api_ended(ended[finished.id], 60) is True  # billed more than reserved
    assert await store.mark_api_ended(ended[failed.id], 0) is True  # failed unbilled: refunded
    assert await store.mark_api_ended(ended[finished.id], 60) is False  # once only
    assert await balanced(store) == 500 - 60
    notes = [r.note for r in await store.ledger_rows(G, limit=20) if r.kind == "settle"]
    assert "cancelled; the API billed 60 credits" in notes


async def test_a_job_expired_while_the_api_renders_it_pays_what_the_api_bills_later(store: Store) -> None:
    # We stop waiting (JOB_TIMEOUT) but the API may still finish the job and bill the account:
    # its pool is settled then, not refunded at the expiry; one that never reached the API is.
    never_sent = (await admit(store, ask(1), POLICY)).job  # gen-4: 50 each
    late = (await admit(store, ask(2), POLICY)).job
    await store.transition(late.id, JobState.SUBMITTING)
    await store.transition(
        late.id, JobState.PROCESSING, api_job_id="a-late", actual_credits=50, submitted_at=1.0
    )
    await store.transition(never_sent.id, JobState.EXPIRED)
    await store.transition(late.id, JobState.EXPIRED)
    await store.transition(late.id, JobState.DELIVERED)  # the member was told it did not finish
    assert await balanced(store) == 500 - 50  # the one never sent is back; the other awaits the API

    (following,) = await store.expired_at_api(0.0)
    assert following.id == late.id
    assert await store.mark_api_ended(following, 50) is True
    assert await store.expired_at_api(0.0) == []  # its end is seen: no longer read
    assert await balanced(store) == 500 - 50
    notes = [r.note for r in await store.ledger_rows(G, limit=20) if r.kind == "settle"]
    assert "expired; the API billed 50 credits" in notes
