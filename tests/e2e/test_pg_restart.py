"""PostgreSQL restarted under two running bot processes (2 shards each of 4), end to end.

The server is this test's own (not the session's: it is stopped mid-run), restarted on the same
port and data directory with ``pg_ctl stop -m fast`` (every session is ended) and ``start``;
with ``-m immediate`` (a crash) too, among the slow cases.
While it is down a member's /animate is refused privately and leaves nothing behind; once it is
back every job committed before the restart completes and is delivered once, the books balance,
one process leads again and a new /animate goes through.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.jobs import JobState
from bot.store.postgres import RETRY_MOST
from testkit.cluster import (
    COST,
    SHARDS,
    WELCOME,
    Cluster,
    all_admitted_and_one_running,
    cluster,
    fire,
    leads,
)
from testkit.postgres import REQUIRE_ENV, PostgresError, PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

DOWN_AT_LEAST = 3.0  # seconds the server stays down: several reconnect attempts and leader ticks fail
AT_THE_API = 5  # jobs processing at the restart (of 10 the Pro account runs at once)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (always started here: an external one given by
    TEST_POSTGRES_URL cannot be restarted by a test)."""
    server = PostgresServer()
    try:
        server.start()
    except PostgresError as e:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {e}", pytrace=False)
        pytest.skip(f"no PostgreSQL: {e}")
    yield server
    server.stop()


def new_member(c: Cluster, name: str) -> Any:
    user = c.fake.add_user(name)
    for g in c.guilds:
        c.fake.add_member(g, user)
    return user


async def wait_for(what: str, check: Any, timeout: float) -> float:
    """Seconds until ``check()`` (a coroutine function) is true; fails after ``timeout``."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


# fast: a restart (sessions ended, clean shutdown); immediate: a crash, recovered from the WAL.
@pytest.mark.parametrize("mode", ["fast", pytest.param("immediate", marks=pytest.mark.slow)])
async def test_postgres_restarted_mid_run_every_committed_job_completes_once(
    tmp_path: Path, own_postgres: PostgresServer, mode: str
) -> None:
    url = own_postgres.create_database("animate")
    async with cluster(
        tmp_path, url, emu={"processing_seconds": 300}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        users = c.members(6)
        per_member = 4
        n = len(users) * per_member
        await fire(c, users, per_member)
        await all_admitted_and_one_running(c, n)

        async def several_at_the_api() -> bool:
            return sum(j.state is JobState.PROCESSING for j in await c.jobs()) >= AT_THE_API

        await wait_for("jobs at the API", several_at_the_api, timeout=60)
        committed = await c.jobs()
        states = Counter(j.state for j in committed)
        assert states[JobState.QUEUED] > 0, states  # some wait in the queue, some are at the API
        late = new_member(c, "late")
        print(f"restarting PostgreSQL ({mode}) with jobs {dict(Counter(j.state.value for j in committed))}")

        await asyncio.to_thread(own_postgres.halt, mode)  # not blocking: the fake and emulator run here
        down = time.monotonic()
        # One /animate on a shard of each process while the database is away.
        refused = [await c.animate(late, 0), await c.animate(late, SHARDS - 1)]
        for it in refused:
            assert (await it.wait_acknowledged(timeout=10)).type == 5
        answers = [(await it.wait_for_messages(n=1, timeout=30))[0] for it in refused]
        listing = await c.fake.invoke_slash("jobs", user=users[0], guild=c.guilds[2], channel=c.channels[2])
        (jobs_answer,) = await listing.wait_for_messages(n=1, timeout=30)
        await asyncio.sleep(max(0.0, DOWN_AT_LEAST - (time.monotonic() - down)))
        assert c.api_stats()["jobs_created"] <= n
        await asyncio.to_thread(own_postgres.resume)
        up = time.monotonic()
        print(f"PostgreSQL was down {up - down:.1f} s")

        for m in answers:  # private, and says what to do
            assert m.ephemeral, m.content
            assert "can't record" in m.content and "try again" in m.content, m.content
        assert all(not it.original_message or it.original_message.deleted for it in refused)
        assert jobs_answer.ephemeral and "can't reach my database" in jobs_answer.content, jobs_answer.content

        async with httpx.AsyncClient() as http:

            async def one_leads() -> bool:
                a, b = await asyncio.gather(leads(http, c.procs[0]), leads(http, c.procs[1]))
                return a or b

            took = await wait_for("a leader after the restart", one_leads, timeout=60)
        print(f"a process leads again {took:.2f} s after PostgreSQL is back")

        delivered_at_up = c.deliveries(users).total()

        async def one_more_delivered() -> bool:
            return c.deliveries(users).total() > delivered_at_up

        took = await wait_for("a result posted after the restart", one_more_delivered, timeout=120)
        print(f"first result posted {took:.2f} s after PostgreSQL is back ({delivered_at_up} before)")

        # A new /animate after the restart goes through; a process whose reconnect is still
        # pausing (at most RETRY_MOST) says "try again shortly", and the member does.
        attempts = 0
        while attempts < 3:
            attempts += 1
            again = await c.animate(late, 1)
            assert (await again.wait_acknowledged(timeout=10)).type == 5
            (card,) = await again.wait_for_messages(n=1, timeout=30)
            if not card.ephemeral:
                break
            assert "try again" in card.content, card.content
            await asyncio.sleep(RETRY_MOST)
        print(f"a new /animate after the restart: admitted at attempt {attempts}")
        assert not card.ephemeral and card.version.embeds, card.content

        jobs = await c.wait_jobs(n + 1, JobState.DELIVERED, timeout=180)
        assert {j.id for j in committed} <= {j.id for j in jobs}
        assert all(j.outcome == "completed" for j in jobs)
        await asyncio.sleep(1.0)  # let a duplicate show itself
        per = c.deliveries([*users, late])
        assert per == {**{u.id: per_member for u in users}, late.id: 1}, per  # each exactly once
        # Nothing of the refused /animate: no API job, no job row (above), no charge.
        assert c.api_stats()["jobs_created"] == n + 1
        billed = sum(j["creditCost"] or 0 for j in c.emu.stats()["jobs"] if j["label"] == "pro")
        assert billed == (n + 1) * COST == sum(j.actual_credits or 0 for j in jobs)
        books = await c.books()
        assert books and all(balance == ledger for balance, ledger in books), books
        assert sum(WELCOME - balance for balance, _ in books) == billed
        # Exactly one leader again, and never two at once.
        async with httpx.AsyncClient() as http:
            a, b = await asyncio.gather(leads(http, c.procs[0]), leads(http, c.procs[1]))
        assert a != b, (a, b)
        assert c.leaders_seen_together() == 0
