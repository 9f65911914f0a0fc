import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.community import admission
from bot.community.admission import Policy, QuotaExceeded, QuotaWindows, admit
from bot.jobs import JobOptions, JobState
from bot.store import NewJob, Store, jobs, pools
from shared import contract
from testkit.books import ledger_sum

GUILD = 31

FREE = Policy(default_plan="free")


def only(plan: contract.Plan, windows: QuotaWindows | None = None) -> Policy:
    return Policy(default_plan=plan.name, plans={plan.name: plan}, windows=windows or QuotaWindows())


def ask(user: int = 1) -> NewJob:
    return NewJob(
        source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"), user_id=user
    )


def guild_ask(user: int) -> NewJob:
    return NewJob(
        source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"), user_id=user,
        guild_id=GUILD, channel_id=3,
    )  # fmt: skip


async def end(store: Store, job_id: str, state: JobState) -> None:
    await store.transition(job_id, JobState.SUBMITTING)
    await store.transition(job_id, JobState.PROCESSING, api_job_id=f"api-{job_id}")
    await store.transition(job_id, state)


async def test_two_at_once_only_one_passes_a_limit_of_one(store: Store) -> None:
    results = await asyncio.gather(*(admit(store, ask(), FREE) for _ in range(2)), return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(admitted) == 1 and len(refused) == 1
    assert refused[0].limit == "concurrent" and refused[0].frees_at is None
    assert "already have 1 animation running" in str(refused[0])
    assert len(await store.jobs_in_states(JobState)) == 1


async def test_concurrency_frees_when_the_job_ends(store: Store) -> None:
    job = (await admit(store, ask(), FREE)).job
    with pytest.raises(QuotaExceeded):
        await admit(store, ask(), FREE)
    await end(store, job.id, JobState.COMPLETED)
    assert (await admit(store, ask(), FREE)).job.state is JobState.QUEUED


async def test_per_minute_names_when_it_frees(store: Store) -> None:
    plan = contract.Plan("t", requests_per_minute=3, concurrent_jobs=99, jobs_per_day=None)
    for i in range(3):
        await admit(store, ask(), only(plan), now=1000.0 + i)
    with pytest.raises(QuotaExceeded) as caught:
        await admit(store, ask(), only(plan), now=1010.0)
    assert caught.value.limit == "per_minute" and caught.value.frees_at == pytest.approx(1060.0, abs=1.5)
    # Real time is far past these windows, so a fresh admission passes.
    assert await admit(store, ask(), only(plan))


async def test_per_day_rolling_and_failed_jobs_are_given_back(store: Store) -> None:
    plan = contract.Plan("t", requests_per_minute=99, concurrent_jobs=99, jobs_per_day=2)
    policy = only(plan, QuotaWindows(minute=60, day=1000))
    a = (await admit(store, ask(), policy, now=5000.0)).job
    b = (await admit(store, ask(), policy, now=5001.0)).job
    with pytest.raises(QuotaExceeded) as caught:
        await admit(store, ask(), policy, now=5100.0)
    assert caught.value.limit == "per_day" and caught.value.frees_at == pytest.approx(6000.0, abs=1.5)
    await end(store, b.id, JobState.FAILED)  # the API failed it: it does not count
    assert await admit(store, ask(), policy, now=5100.0)
    await end(store, a.id, JobState.COMPLETED)
    with pytest.raises(QuotaExceeded):
        await admit(store, ask(), policy, now=5200.0)


async def test_people_do_not_share_limits_and_cli_has_none(store: Store) -> None:
    await admit(store, ask(user=1), FREE)
    assert await admit(store, ask(user=2), FREE)
    cli = NewJob(source="cli", image_ref="file:///x", options=JobOptions(prompt="p"))
    for _ in range(3):
        assert await admit(store, cli, FREE)


def test_only_the_requester_or_a_moderator_of_that_server_may_manage() -> None:
    from bot.jobs import Job, may_manage

    job = Job(id="j", idempotency_key="k", state=JobState.QUEUED, source="discord", image_ref="u",
              options=JobOptions(prompt="p"), estimated_credits=50, created_at=0, updated_at=0,
              user_id=1, guild_id=100)  # fmt: skip
    assert may_manage(job, 1, moderator_of=None)
    assert may_manage(job, 2, moderator_of=100)
    assert not may_manage(job, 2, moderator_of=None)
    assert not may_manage(job, 2, moderator_of=200)  # a moderator of another server


def test_fair_order_round_robin_least_recently_served_first() -> None:
    from bot.jobs import Job
    from bot.pipeline.scheduler import fair_order

    def job(i: int, user: int) -> Job:
        return Job(id=f"j{i}", idempotency_key=str(i), state=JobState.QUEUED, source="discord", image_ref="u",
                   options=JobOptions(prompt="p"), estimated_credits=1, created_at=float(i), updated_at=0,
                   user_id=user)  # fmt: skip

    heavy = [job(i, 1) for i in range(5)]
    queued = [*heavy, job(5, 2), job(6, 3), job(7, 2)]
    assert [j.id for j in fair_order(queued, {})] == ["j0", "j5", "j6", "j1", "j7", "j2", "j3", "j4"]
    # Person 1 was just served: the others go first.
    assert [j.id for j in fair_order(queued, {1: 10.0})][:3] == ["j5", "j6", "j0"]


async def finished(store: Store, user: int, policy: Policy, now: float) -> None:
    """Admit a job at ``now`` and end it at once (so only the minute and day windows count)."""
    await end(store, (await admit(store, ask(user), policy, now=now)).job.id, JobState.COMPLETED)


@pytest.mark.parametrize("name", ["free", "starter", "pro"])
async def test_concurrent_and_minute_limits_of_each_plan_hold_across_a_restart(
    tmp_path: Path, name: str
) -> None:
    """The API's own numbers, counted from the job rows, so reopening the database (a restart)
    changes nothing: refused just before the window frees, admitted just after."""
    plan, policy, path = contract.PLANS[name], Policy(default_plan=name), tmp_path / "jobs.db"
    store = await Store.open(path)
    try:
        # Concurrent: the plan's number of running jobs, then refused until one ends.
        running = [(await admit(store, ask(1), policy, now=T0)).job for _ in range(plan.concurrent_jobs)]
        store = await reopen(store, path)
        with pytest.raises(QuotaExceeded) as caught:
            await admit(store, ask(1), policy, now=T0 + 1)
        assert caught.value.limit == "concurrent" and caught.value.allowed == plan.concurrent_jobs
        await end(store, running[0].id, JobState.COMPLETED)
        assert await admit(store, ask(1), policy, now=T0 + 2)

        # Per minute: the last 60 s.
        for i in range(plan.requests_per_minute):
            await finished(store, 2, policy, T0 + i * 0.1)
        store = await reopen(store, path)
        with pytest.raises(QuotaExceeded) as caught:
            await admit(store, ask(2), policy, now=T0 + 59.9)
        assert caught.value.limit == "per_minute" and caught.value.frees_at == pytest.approx(T0 + 60)
        assert "in the last minute" in str(caught.value)
        await finished(store, 2, policy, T0 + 60.05)
    finally:
        await store.close()


@pytest.mark.parametrize("name", ["free", "starter", pytest.param("pro", marks=pytest.mark.slow)])
async def test_day_limit_of_each_plan_is_a_rolling_24h_across_a_restart(tmp_path: Path, name: str) -> None:
    plan, policy, path = contract.PLANS[name], Policy(default_plan=name), tmp_path / "jobs.db"
    assert plan.jobs_per_day is not None
    store = await Store.open(path)
    try:
        gap = 60 / plan.requests_per_minute + 0.001  # spread so the minute never binds
        for i in range(plan.jobs_per_day):
            await finished(store, 3, policy, T0 + i * gap)
        store = await reopen(store, path)
        with pytest.raises(QuotaExceeded) as caught:
            await admit(store, ask(3), policy, now=T0 + plan.jobs_per_day * gap + 60)
        assert caught.value.limit == "per_day" and caught.value.frees_at == pytest.approx(T0 + 86_400)
        assert "last 24 hours" in str(caught.value)
        with pytest.raises(QuotaExceeded):
            await admit(store, ask(3), policy, now=T0 + 86_399.9)
        assert await admit(store, ask(3), policy, now=T0 + 86_400.05)
    finally:
        await store.close()


async def reopen(store: Store, path: Path) -> Store:
    await store.close()
    return await Store.open(path)


T0 = 1_800_000_000.0  # a fixed "now", in the future so real time never overlaps the windows


async def test_windows_count_on_the_database_clock_when_host_clocks_lie(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three hosts whose clocks are off by minutes admit for one member: the per-minute window
    still holds, as they all read the time from the database (PostgreSQL; SQLite is one host
    per file, whose clock is the database's)."""
    plan = contract.Plan("t", requests_per_minute=3, concurrent_jobs=99, jobs_per_day=None)

    def host(skew: float) -> None:  # the clock admission would read on this host
        monkeypatch.setattr(admission, "time", SimpleNamespace(time=lambda: time.time() + skew))

    created = []
    for skew in (0.0, -120.0, +90.0):  # behind by two minutes: it would not see the others
        host(skew)
        created.append((await admit(store, ask(), only(plan))).job.created_at)
    host(-120.0)
    with pytest.raises(QuotaExceeded) as caught:
        await admit(store, ask(), only(plan))
    assert caught.value.limit == "per_minute"
    assert all(abs(at - time.time()) < 30 for at in created)  # the true time, not the hosts'


async def test_a_taken_job_id_is_drawn_again_and_the_pool_pays_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = Policy(default_plan="pro", welcome_credits=500)
    first = (await admit(store, guild_ask(1), policy)).job
    drawn = iter([first.id, "fresh001"])  # the next admission draws the taken id first
    monkeypatch.setattr(jobs, "new_job_id", lambda: next(drawn))
    second = (await admit(store, guild_ask(2), policy)).job
    assert second.id == "fresh001"
    rows = await store.ledger_rows(GUILD)
    reserved = {(r.job_id, r.user_id) for r in rows if r.kind == "reserve"}
    assert reserved == {(first.id, 1), ("fresh001", 2)}
    guild = await store.get_guild(GUILD)
    assert (
        guild is not None
        and guild.balance == await ledger_sum(store, GUILD) == 500 - 2 * first.estimated_credits
    )
    taken = await store.get_job(first.id)
    assert taken is not None and taken.user_id == 1


async def test_a_members_windows_are_each_servers_own(store: Store) -> None:
    # Pro in server A, Free (one at a time) in server B: A's jobs, paid by A's pool under A's
    # plan, do not use B's limit, nor B's A's; DMs count apart from both.
    pro_server, free_server = 41, 42
    policy = Policy(default_plan="free", welcome_credits=10_000)
    await store.ensure_guild(pro_server, 10_000)
    await store.atomic(lambda tx: pools.update(tx, pro_server, default_plan="pro"))

    def in_server(guild_id: int | None) -> NewJob:
        return NewJob(source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"),
                      user_id=7, guild_id=guild_id, channel_id=3 if guild_id else None)  # fmt: skip

    for _ in range(3):
        await admit(store, in_server(pro_server), policy)
    await admit(store, in_server(free_server), policy)  # before: 3 running elsewhere, refused
    with pytest.raises(QuotaExceeded, match="already have 1 animation running here"):
        await admit(store, in_server(free_server), policy)
    await admit(store, in_server(pro_server), policy)  # Pro's room in A is untouched by B
    await admit(store, in_server(None), policy)  # a DM: the bot's default (Free), counted apart
    with pytest.raises(QuotaExceeded):
        await admit(store, in_server(None), policy)
