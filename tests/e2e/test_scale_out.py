"""Scale-out end to end: two real bot processes on one PostgreSQL database, each serving two of
four shards of the Discord fake, against the time-scaled API emulator, over loopback.

Process A runs ``run --shard-ids 0,1 --shard-count 4``, process B ``--shard-ids 2,3``; the fake
has four shards with max_concurrency 4 (no identify waits), and one server on each shard. The
books are read from the shared database; who leads is read from each process's ``/healthz``
(the set-up and those reads: testkit/cluster.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.jobs import JobState
from bot.store import Store
from testkit.cluster import (
    COST,
    WELCOME,
    all_admitted_and_one_running,
    check_books,
    cluster,
    fire,
    the_leader,
    wait_leader,
)

pytestmark = pytest.mark.timeout(300)


async def scale_run(tmp_path: Path, url: str, members: int, per_member: int) -> None:
    pro = {"DEFAULT_USER_PLAN": "pro"}
    async with cluster(tmp_path, url, emu={"processing_seconds": 60}, extra=pro) as c:
        users = c.members(members)
        n = members * per_member
        start = time.monotonic()
        await fire(c, users, per_member)
        jobs = await check_books(c, users, n, per_member)
        took = time.monotonic() - start
        print(f"{n} animations from {members} members on 2 processes x 2 shards: {took:.1f} s")

        stats = c.api_stats()
        assert stats["rate_limited"] == 0 and c.emu.stats()["responses_by_status"].get("429", 0) == 0
        assert 0 < c.peak_active <= 10, c.peak_active
        assert stats["jobs_created"] == n
        assert {j.guild_id for j in jobs} == {g.id for g in c.guilds}
        # exactly one leader at a time, and one at the end
        assert c.leaders_seen_together() == 0
        assert sum(1 for _, a, b in c.samples if a or b) > 0
        await the_leader(c)


async def test_two_processes_on_two_shards_each_share_one_pro_account(
    tmp_path: Path, postgres_url: str
) -> None:
    await scale_run(tmp_path, postgres_url, members=8, per_member=5)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_200_animations_from_40_members_on_two_processes(tmp_path: Path, postgres_url: str) -> None:
    await scale_run(tmp_path, postgres_url, members=40, per_member=5)


async def test_a_free_member_on_two_processes_at_once_gets_each_servers_limit_once(
    tmp_path: Path, postgres_url: str
) -> None:
    # A member's windows are each server's own (they count where the member asks): a Free
    # member firing in a server of each process at once is admitted once in each, and the
    # next pair, fired at once again, is refused in both. Both processes admit for the same
    # member at the same instant, under the member's key.
    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 300}, extra={"DEFAULT_USER_PLAN": "free"}
    ) as c:  # fmt: skip
        users = c.members(4)
        limit = "already have 1 animation running here"
        for i, user in enumerate(users):
            for round_ in ("admitted", "refused"):
                # shard 0 or 1 is process A's, shard 2 or 3 process B's: both at the same instant
                its = await asyncio.gather(c.animate(user, i % 2), c.animate(user, 2 + i % 2))
                for it in its:
                    await it.wait_acknowledged(timeout=10)
                answers = [(await it.wait_for_messages(n=1, timeout=20))[0] for it in its]
                refused = [m for m in answers if m.ephemeral and limit in (m.content or "")]
                assert len(refused) == (0 if round_ == "admitted" else 2), [
                    (m.ephemeral, m.content) for m in answers
                ]
        jobs = await check_books(c, users, 2 * len(users), 2)  # each delivered once, pools = bill
        assert sorted(j.user_id for j in jobs) == sorted(u.id for u in users for _ in range(2))
        assert c.api_stats()["jobs_created"] == 2 * len(users)


async def test_kill_9_of_the_leader_mid_run_the_other_takes_over(tmp_path: Path, postgres_url: str) -> None:
    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 300}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        users = c.members(6)
        n = 24
        await fire(c, users, 4)
        jobs = await all_admitted_and_one_running(c, n)
        k = await the_leader(c)
        leader, other = c.procs[k], c.procs[1 - k]
        states = dict(Counter(j.state.value for j in jobs))
        print(f"killing the leader (process {'AB'[k]}) with jobs {states}")
        await leader.kill()
        took = await wait_leader(c, other)
        print(f"kill -9: process {'AB'[1 - k]} leads {took:.2f} s later")
        await check_books(c, users, n, 4)
        assert c.api_stats()["jobs_created"] == n  # resubmitted jobs were replays, not new jobs
        # the new leader counts the old one's jobs still running at the API
        assert c.api_stats()["rate_limited"] == 0 and 0 < c.peak_active <= 10, c.peak_active
        assert c.leaders_seen_together() == 0
        # the killed process comes back as a follower
        await leader.start()
        await c.fake.wait_for_all_shards_ready(timeout=90)
        await asyncio.sleep(2.0)
        assert await the_leader(c) == 1 - k


async def test_sigstop_of_the_leader_the_other_takes_over_and_the_old_one_submits_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 300}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        users = c.members(6)
        n = 24
        await fire(c, users, 4)
        jobs = await all_admitted_and_one_running(c, n)
        k = await the_leader(c)
        leader, other = c.procs[k], c.procs[1 - k]
        assert leader.proc is not None
        states = dict(Counter(j.state.value for j in jobs))
        print(f"stopping the leader (process {'AB'[k]}) with jobs {states}")
        os.kill(leader.proc.pid, signal.SIGSTOP)
        took = await wait_leader(c, other, timeout=60)
        print(f"SIGSTOP: process {'AB'[1 - k]} leads {took:.2f} s later")
        await asyncio.sleep(2.0)
        os.kill(leader.proc.pid, signal.SIGCONT)
        await check_books(c, users, n, 4)
        await asyncio.sleep(3.0)  # the old leader, running again, must not submit anything
        assert c.api_stats()["jobs_created"] == n
        assert c.api_stats()["rate_limited"] == 0 and 0 < c.peak_active <= 10, c.peak_active
        assert c.deliveries(users).total() == n
        assert await the_leader(c) == 1 - k
        assert c.leaders_seen_together() == 0


async def test_a_leader_frozen_with_a_create_in_flight_changes_nothing_when_it_wakes(
    tmp_path: Path, postgres_url: str
) -> None:
    # The create is made at the API and its answer held 5 s; the leader is frozen meanwhile.
    # The new leader resubmits it with its idempotency key (a replay) and sees it to the end;
    # the old one, woken, gets its stale answer and must neither create nor regress anything.
    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 60}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        (dave,) = c.members(1)
        k = await the_leader(c)
        leader, other = c.procs[k], c.procs[1 - k]
        assert leader.proc is not None
        c.emu.inject(["slow:5"])
        it = await c.animate(dave, 0)
        await it.wait_acknowledged(timeout=10)
        await c.fake.wait_until(lambda: len(c.emu.stats()["jobs"]) == 1, 30, "the job created at the API")
        os.kill(leader.proc.pid, signal.SIGSTOP)
        took = await wait_leader(c, other, timeout=60)
        print(f"SIGSTOP with a create in flight: process {'AB'[1 - k]} leads {took:.2f} s later")
        (job,) = await c.wait_jobs(1, JobState.DELIVERED, timeout=60)
        os.kill(leader.proc.pid, signal.SIGCONT)
        await asyncio.sleep(6.0)  # the held answer reaches the old leader, which wakes
        (after,) = await c.jobs()
        assert after.state is JobState.DELIVERED and after.delivered_at == job.delivered_at
        stats = c.api_stats()
        assert stats["jobs_created"] == 1 and stats["idempotent_replays"] >= 1, stats
        assert c.deliveries([dave]) == {dave.id: 1}
        books = await c.books()
        assert all(balance == ledger for balance, ledger in books), books
        assert sum(WELCOME - balance for balance, _ in books) == COST
        assert await the_leader(c) == 1 - k and c.leaders_seen_together() == 0


async def test_kill_9_of_the_leader_while_results_are_delivered(tmp_path: Path, postgres_url: str) -> None:
    # Short jobs: by the kill both processes are sending results. The dead one's delivery claims
    # run out (30 s) and are taken again; a result it sent before dying must not be sent twice.
    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 60}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        users = c.members(8)
        n = 40
        await fire(c, users, 5)
        deadline = time.monotonic() + 90
        while sum((jobs := await c.jobs()) and [j.state is JobState.DELIVERED for j in jobs]) < 6:
            assert time.monotonic() < deadline, Counter(j.state for j in jobs)
            await asyncio.sleep(0.05)
        k = await the_leader(c)
        states = dict(Counter(j.state.value for j in jobs))
        print(f"killing the leader (process {'AB'[k]}) while delivering, jobs {states}")
        start = time.monotonic()
        await c.procs[k].kill()
        took = await wait_leader(c, c.procs[1 - k])
        print(f"kill -9 while delivering: process {'AB'[1 - k]} leads {took:.2f} s later")
        await check_books(c, users, n, 5)
        print(f"all {n} delivered {time.monotonic() - start:.1f} s after the kill")
        assert c.api_stats()["jobs_created"] == n


async def test_a_process_frozen_mid_send_past_its_delivery_claim_sends_the_result_once(
    tmp_path: Path, postgres_url: str
) -> None:
    # The result's follow-up is held 4 s at Discord and the sender (the leader: the completion
    # webhook reaches it) is frozen meanwhile; Discord posts it. The claim runs out (30 s), the
    # other process sweeps the job up, finds the message (delivery_started_at is set) and does
    # not post it again; woken, the old sender gets its answer and must not post either.
    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 60}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        (erin,) = c.members(1)
        k = await the_leader(c)
        leader = c.procs[k]
        assert leader.proc is not None
        c.fake.inject("POST /webhooks/{app}/{token}", status=None, delay=4.0, count=None)  # follow-ups
        it = await c.animate(erin, 0)
        await it.wait_acknowledged(timeout=10)
        store = await Store.open(c.url)
        try:  # the send has begun: delivery_started_at is written just before the follow-up
            deadline = time.monotonic() + 60
            while not ((jobs := await store.jobs_in_states(JobState)) and jobs[0].delivery_started_at):
                assert time.monotonic() < deadline, jobs
                await asyncio.sleep(0.02)
        finally:
            await store.close()
        os.kill(leader.proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        (job,) = await c.jobs()
        assert job.state is JobState.COMPLETED, job
        await c.wait_jobs(1, JobState.DELIVERED, timeout=120)
        took = time.monotonic() - stopped
        print(f"frozen sender: the other process recorded the delivery {took:.1f} s later")
        assert c.deliveries([erin]) == {erin.id: 1}
        os.kill(leader.proc.pid, signal.SIGCONT)
        await asyncio.sleep(8.0)  # the old sender wakes and gets its answer
        assert c.deliveries([erin]) == {erin.id: 1}, "the result was sent twice"
        (after,) = await c.jobs()
        assert after.state is JobState.DELIVERED
        assert "already posted before a restart" in c.procs[1 - k].log()


async def test_a_leader_frozen_inside_a_transaction_does_not_stall_the_other_process(
    tmp_path: Path, postgres_url: str
) -> None:
    import psycopg

    async with cluster(
        tmp_path, postgres_url, emu={"processing_seconds": 300}, extra={"DEFAULT_USER_PLAN": "pro"}
    ) as c:  # fmt: skip
        gina, hal = c.members(2)
        k = await the_leader(c)
        leader, other = c.procs[k], c.procs[1 - k]
        assert leader.proc is not None
        it = await c.animate(gina, 0)
        await it.wait_acknowledged(timeout=10)
        await c.wait_jobs(1, JobState.PROCESSING, timeout=30)
        # Hold the server's pool row so the leader's completion transaction waits inside it.
        holder = await psycopg.AsyncConnection.connect(c.url)
        watcher = await psycopg.AsyncConnection.connect(c.url, autocommit=True)
        try:
            lock = "SELECT balance FROM guilds WHERE guild_id = %s FOR UPDATE"
            await holder.execute(lock, (c.guilds[0].id,))
            deadline = time.monotonic() + 30
            while True:
                cur = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
                row = await cur.fetchone()
                if row and row[0] > 0:
                    break
                assert time.monotonic() < deadline, "the completion never waited on the pool row"
                await asyncio.sleep(0.05)
            os.kill(leader.proc.pid, signal.SIGSTOP)  # frozen with its transaction open
            await holder.rollback()
        finally:
            await holder.close()
            await watcher.close()
        took = await wait_leader(c, other, timeout=60)
        print(f"leader frozen inside a transaction: process {'AB'[1 - k]} leads {took:.2f} s later")
        # The other process must go on serving: a new job in the same server, and the old one
        # seen to its end.
        start = time.monotonic()
        second = await c.animate(hal, 2 * (1 - k))  # a shard of the live process
        await second.wait_acknowledged(timeout=10)
        await c.wait_jobs(2, JobState.DELIVERED, timeout=90)
        print(f"both delivered {time.monotonic() - start:.1f} s after the takeover")
        assert c.deliveries([gina, hal]) == {gina.id: 1, hal.id: 1}
