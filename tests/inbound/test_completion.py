"""Reports of job ends applied in groups (ReportWriter) against a real store."""

from __future__ import annotations

import asyncio

import pytest

from bot.api.client import ApiJob
from bot.community.admission import Policy, admit
from bot.inbound.completion import Applied, ReportWriter
from bot.jobs import Job, JobOptions, JobState
from bot.store import NewJob, Store, pools
from shared import contract
from testkit.books import ledger_sum

GUILD = 42
OPTIONS = JobOptions(prompt="waves")
COST = OPTIONS.estimated_credits


async def running_jobs(store: Store, n: int) -> list[Job]:
    """``n`` server jobs the API is working on, each with its pool reservation."""
    await store.ensure_guild(GUILD)
    await store.atomic(lambda tx: pools.topup(tx, GUILD, 100_000, actor_id=1))
    jobs = []
    for i in range(n):
        new = NewJob(source="discord", image_ref="x", options=OPTIONS, user_id=1000 + i, guild_id=GUILD)
        job = (await admit(store, new, Policy(default_plan="enterprise"))).job
        await store.transition(job.id, JobState.SUBMITTING)
        jobs.append(
            await store.transition(job.id, JobState.PROCESSING, api_job_id=f"api-{i}", actual_credits=COST)
        )
    return jobs


def done(i: int, cost: int | None = None) -> ApiJob:
    return ApiJob(
        id=f"api-{i}", status=contract.STATUS_COMPLETED, url=f"https://cdn/{i}.mp4", credit_cost=cost
    )


async def test_a_burst_of_reports_ends_each_job_once_and_settles_each_pool_charge_once(store: Store) -> None:
    jobs = await running_jobs(store, 40)
    followed: list[tuple[ApiJob, Applied]] = []
    writer = ReportWriter(store, lambda report, applied: followed.append((report, applied)))
    reports = [done(i, cost=COST - 10) for i in range(40)] + [done(7), done(99)]  # a duplicate, an unknown id

    results = await asyncio.gather(*(writer.apply(r) for r in reports))

    assert results[-1].job is None  # unknown: the receiver asks the sender to come back
    assert [r.ended is not None for r in results[:40]] == [True] * 40
    assert results[40].job is not None and results[40].ended is None  # the duplicate changed nothing
    for job in jobs:
        now = await store.get_job(job.id)
        assert now is not None and now.state is JobState.COMPLETED and now.actual_credits == COST - 10
    # Each job cost 10 less than reserved: 40 refunds of 10, once each, and the pool equals its ledger.
    guild = await store.get_guild(GUILD)
    assert guild is not None and guild.balance == 100_000 - 40 * (COST - 10) == await ledger_sum(store, GUILD)
    assert sum(1 for _, a in followed if a.ended is not None) == 40


async def test_one_report_the_database_refuses_does_not_fail_the_others_of_its_group(
    sqlite_store: Store,
) -> None:
    store = sqlite_store  # the refusal is a SQLite trigger (RAISE(ABORT, ...))
    await running_jobs(store, 5)
    # A real failure inside the transaction, for one report only.
    await store.atomic(
        lambda tx: tx.write(
            "CREATE TRIGGER poison BEFORE UPDATE ON jobs WHEN NEW.result_url = 'https://cdn/2.mp4'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
    )
    writer = ReportWriter(store, lambda report, applied: None)

    results = await asyncio.gather(*(writer.apply(done(i)) for i in range(5)), return_exceptions=True)

    assert isinstance(results[2], Exception) and "poisoned row" in str(results[2])
    assert all(isinstance(r, Applied) and r.ended is not None for i, r in enumerate(results) if i != 2)
    states = [j.state for j in await store.jobs_in_states(JobState)]
    assert sorted(s.value for s in states) == ["completed"] * 4 + ["processing"]


async def test_a_sender_that_hangs_up_still_gets_its_end_recorded_and_handed_on(store: Store) -> None:
    [job] = await running_jobs(store, 1)
    followed: list[Applied] = []
    writer = ReportWriter(store, lambda report, applied: followed.append(applied))

    sender = asyncio.create_task(writer.apply(done(0)))
    await asyncio.sleep(0)  # the report is queued; the sender now goes away
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    for _ in range(100):
        if followed:
            break
        await asyncio.sleep(0.01)

    assert [a.ended.id for a in followed if a.ended] == [job.id]
    now = await store.get_job(job.id)
    assert now is not None and now.state is JobState.COMPLETED


async def test_a_group_that_costs_more_than_reserved_charges_only_what_the_pool_has(store: Store) -> None:
    jobs = await running_jobs(store, 6)
    guild = await store.get_guild(GUILD)
    assert guild is not None
    await store.atomic(lambda tx: pools.ledger(tx, GUILD, "topup", 15 - guild.balance, note="drain to 15"))
    writer = ReportWriter(store, lambda report, applied: None)
    failed = [ApiJob(id=f"api-{i}", status=contract.STATUS_FAILED, error="nsfw") for i in (0, 1)]
    pricier = [done(i, cost=COST + 10) for i in (2, 3, 4, 5)]  # 40 more than reserved in all

    await asyncio.gather(*(writer.apply(r) for r in failed + pricier))

    # 2 failures give back 2 x COST; the 4 overruns then take what the pool has, never more.
    guild = await store.get_guild(GUILD)
    assert guild is not None and guild.balance == max(0, 15 + 2 * COST - 40) == await ledger_sum(store, GUILD)
    states = {j.id: j.state for j in await store.jobs_in_states(JobState)}
    assert [states[j.id] for j in jobs] == [JobState.FAILED] * 2 + [JobState.COMPLETED] * 4
