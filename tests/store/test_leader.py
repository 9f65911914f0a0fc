"""Leadership: one leader among the processes sharing a database, taken over when it dies or
freezes, and fenced so a stale leader's write changes nothing.

PostgreSQL tests open one Store per "process" on the same database (each its own connections).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from bot.jobs import JobOptions, JobState
from bot.store import NewJob, NotLeader, Store
from bot.store.engine import Leadership
from bot.store.postgres import PostgresLeadership

LEASE = 3.0
TICK = 0.25  # the tests tick faster than the bot (1 s), to measure the takeover finely


def new_job(user: int = 1) -> NewJob:
    return NewJob(source="discord", image_ref="https://example.test/a.png",
                  options=JobOptions(prompt="p"), user_id=user, channel_id=5, guild_id=6)  # fmt: skip


async def leaders(ships: list[Leadership]) -> list[bool]:
    return [await ship.tick() for ship in ships]


async def tick_until_leader(ships: list[Leadership], timeout: float = 20.0) -> tuple[Leadership, float]:
    """Tick the given leaderships until one leads; the one, and how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        for ship in ships:
            if await ship.tick():
                return ship, time.monotonic() - start
        await asyncio.sleep(TICK)
    raise AssertionError("no process took over in time")


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_sqlite_is_always_the_leader_with_nothing_to_fence(sqlite_store: Store) -> None:
    ship = sqlite_store.leadership("test")
    assert ship.is_leader and await ship.tick() and ship.fence() is None
    job = await sqlite_store.insert_job(new_job())
    moved = await sqlite_store.transition(job.id, JobState.SUBMITTING, expected=JobState.QUEUED, fence=None)
    assert moved.state is JobState.SUBMITTING
    await ship.close()


@pytest.fixture
async def stores(postgres_url: str) -> list[Store]:
    opened = [await Store.open(postgres_url) for _ in range(3)]
    yield opened  # type: ignore[misc]
    for store in opened:
        await store.close()


async def test_exactly_one_of_three_processes_leads(stores: list[Store]) -> None:
    ships = [store.leadership(f"p{i}", LEASE) for i, store in enumerate(stores)]
    try:
        for _ in range(4):
            assert sum(await leaders(ships)) == 1
            await asyncio.sleep(TICK)
        assert sum(ship.is_leader for ship in ships) == 1
        assert await stores[0].leader_term() == 1
    finally:
        for ship in ships:
            await ship.close()


async def test_a_dead_leaders_connection_hands_over_within_seconds(
    stores: list[Store], postgres_url: str
) -> None:
    ships = [store.leadership(f"p{i}", LEASE) for i, store in enumerate(stores)]
    try:
        first, _ = await tick_until_leader(ships)
        assert isinstance(first, PostgresLeadership) and first.term == 1
        pid = first._pid
        assert pid is not None
        terminate(postgres_url, pid)  # as kill -9 does: the backend ends, its lock with it
        others = [ship for ship in ships if ship is not first]
        second, took = await tick_until_leader(others)
        print(f"\ntakeover after the leader's connection died: {took:.2f}s (followers tick every {TICK}s)")
        assert isinstance(second, PostgresLeadership) and second.term == 2
        assert not await first.tick() and not first.is_leader  # the old one knows it lost
        assert sum(await leaders(ships)) == 1
    finally:
        for ship in ships:
            await ship.close()


async def test_a_frozen_leader_is_replaced_after_its_lease_and_its_write_is_fenced(
    stores: list[Store],
) -> None:
    frozen_store, follower_store, _ = stores
    frozen = frozen_store.leadership("frozen", LEASE)
    follower = follower_store.leadership("follower", LEASE)
    try:
        assert await frozen.tick()
        stale_term = frozen.fence()
        assert stale_term == 1
        job = await frozen_store.insert_job(new_job())
        # Frozen: it ticks no more but keeps its connection, so its advisory lock stays held.
        start = time.monotonic()
        new, took = await tick_until_leader([follower])
        print(f"\ntakeover from a frozen leader: {took:.2f}s (lease {LEASE}s)")
        assert new is follower and took >= LEASE * 0.5
        assert time.monotonic() - start < LEASE + 10
        # The frozen one wakes: by its own clock the lease is over ...
        assert not frozen.is_leader
        with pytest.raises(NotLeader):
            frozen.fence()
        # ... and a write it had already decided on, carrying its old term, changes nothing.
        with pytest.raises(NotLeader):
            await frozen_store.transition(
                job.id, JobState.SUBMITTING, expected=JobState.QUEUED, fence=stale_term
            )
        assert (await follower_store.get_job(job.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        assert not await frozen.tick()  # its lock connection was ended
        # The new term's claim goes through.
        moved = await follower_store.transition(
            job.id, JobState.SUBMITTING, expected=JobState.QUEUED, fence=follower.fence()
        )
        assert moved.state is JobState.SUBMITTING
    finally:
        await frozen.close()
        await follower.close()


async def test_a_leader_that_steps_down_is_followed_at_once(stores: list[Store], tmp_path: Path) -> None:
    a, b = stores[0].leadership("a", LEASE), stores[1].leadership("b", LEASE)
    try:
        assert await a.tick() and not await b.tick()
        await a.close()  # a clean stop: the lock goes with the connection
        _, took = await tick_until_leader([b])
        print(f"\ntakeover after a clean stop: {took:.2f}s")
        assert b.is_leader
    finally:
        await b.close()
