"""Several processes on one PostgreSQL database: one leader runs the scheduler and the poller,
a successor carries on what a dead leader left in flight, followers wake the leader, and every
result is delivered once by whichever process claimed it.

Each "process" is a Store (its own connections), a Leadership and a Pipeline; the API is the
real emulator; Discord is a RecordingMessenger per process. Times are printed, not asserted
tight: the machine is shared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import psycopg
import pytest

from bot.api.client import CreateRequest, DoitongClient, RetryPolicy
from bot.community.admission import Policy, admit
from bot.community.moderation import Moderation
from bot.jobs import JobOptions, JobState
from bot.pipeline.pipeline import Pipeline, PipelineOptions
from bot.store import NewJob, Store, leader
from bot.store.postgres import PostgresLeadership
from emulator.server import Emulator
from testkit.accounts import PRO_KEY
from testkit.recording_messenger import RecordingMessenger
from tests.pipeline.test_pipeline import IMAGE, PRO, emu, wait_for

__all__ = ["emu"]  # the fixture, shared with test_pipeline

LEASE = 3.0
TICK = 0.25
POLICY = Policy(default_plan="pro", welcome_credits=1_000_000)


class Process:
    """One bot process's job stack: store, leadership, API client, pipeline."""

    def __init__(self, store: Store, emu: Emulator, name: str) -> None:
        self.store = store
        self.name = name
        self.leadership = store.leadership(name, LEASE)
        self.client = DoitongClient(emu.base_url, PRO_KEY, retry=RetryPolicy(max_retries=3, base_delay=0.01))
        self.messenger = RecordingMessenger()
        window = 60 * emu.config.time_scale
        self.pipeline = Pipeline(
            store, self.client, self.messenger,
            PipelineOptions(plan=PRO, webhook_url=None, rate_window=window, job_timeout=30,
                            progress_interval=0.2, leader_tick=TICK),
            leadership=self.leadership,
        )  # fmt: skip

    @property
    def backend_pid(self) -> int | None:
        assert isinstance(self.leadership, PostgresLeadership)
        return self.leadership._pid

    async def close(self) -> None:
        await self.pipeline.stop()
        await self.leadership.close()
        await self.client.aclose()
        await self.store.close()


@pytest.fixture
async def processes(postgres_url: str, emu: Emulator) -> AsyncIterator[Callable[[str], object]]:
    async with AsyncExitStack() as stack:

        async def make(name: str) -> Process:
            process = Process(await Store.open(postgres_url), emu, name)
            stack.push_async_callback(process.close)
            return process

        yield make


def terminate(url: str, pid: int) -> None:
    """End a backend, as the kernel closing a killed process's socket does."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def admitted(store: Store, user: int = 1) -> str:
    new = NewJob(source="discord", image_ref=IMAGE, options=JobOptions(prompt="p", version="gen-2"),
                 user_id=user, channel_id=5, guild_id=6)  # fmt: skip
    job = (await admit(store, new, POLICY)).job
    await store.set_status_card(job.id, 5, 99)
    return job.id


async def state_of(store: Store, job_id: str) -> JobState:
    job = await store.get_job(job_id)
    assert job is not None
    return job.state


async def test_one_leader_runs_the_loops_and_a_successor_resumes_what_it_left(
    processes: Callable[[str], object], postgres_url: str
) -> None:
    a: Process = await processes("a")  # type: ignore[misc]
    b: Process = await processes("b")  # type: ignore[misc]
    await a.pipeline.start()
    await b.pipeline.start()
    assert (a.pipeline.is_leader, b.pipeline.is_leader) == (True, False)
    # Work the leader does while it lives.
    first = await admitted(b.store)
    await wait_for(lambda: _is(b.store, first, JobState.DELIVERED))
    # The leader dies mid-way: its loops are gone, one job was sent to the API but not recorded
    # as running ("submitting", its key used), another is running at the API.
    pid = a.backend_pid
    assert pid is not None
    await a.pipeline.stop()
    stranded = await admitted(b.store, user=2)
    job = await b.store.transition(stranded, JobState.SUBMITTING, expected=JobState.QUEUED)
    request = CreateRequest(image_url=IMAGE, prompt="p", version="gen-2")
    sent = await a.client.create_job(request, idempotency_key=job.idempotency_key)
    running = await admitted(b.store, user=3)
    await b.store.transition(running, JobState.SUBMITTING, expected=JobState.QUEUED)
    at_api = await a.client.create_job(request, idempotency_key="running-key")
    await b.store.transition(
        running, JobState.PROCESSING, expected=JobState.SUBMITTING, api_job_id=at_api.id,
        submitted_at=time.time(),
    )  # fmt: skip
    started = time.monotonic()
    terminate(postgres_url, pid)
    await wait_for(lambda: _leads(b))
    took = time.monotonic() - started
    print(f"\npipeline takeover after the leader died: {took:.2f}s (tick {TICK}s)")
    assert await b.store.leader_term() == 2
    await wait_for(lambda: _is(b.store, stranded, JobState.DELIVERED))
    await wait_for(lambda: _is(b.store, running, JobState.DELIVERED))
    resumed = await b.store.get_job(stranded)
    assert resumed is not None and resumed.api_job_id == sent.id  # the stored key: no second job
    sends = [s.job_id for s in a.messenger.sent + b.messenger.sent]
    assert sorted(sends) == sorted([first, stranded, running])  # each once


async def _is(store: Store, job_id: str, state: JobState) -> bool:
    return await state_of(store, job_id) is state


async def _leads(process: Process) -> bool:
    return process.pipeline.is_leader


async def test_a_leader_that_lost_its_lock_connection_stops_its_loops(
    processes: Callable[[str], object], postgres_url: str
) -> None:
    a: Process = await processes("a")  # type: ignore[misc]
    b: Process = await processes("b")  # type: ignore[misc]
    await a.pipeline.start()
    await b.pipeline.start()
    pid = a.backend_pid
    assert pid is not None and a.pipeline.is_leader
    terminate(postgres_url, pid)
    await wait_for(lambda: _leads(b))
    await wait_for(lambda: _not_leading(a))
    assert not a.pipeline._leader_tasks  # its scheduler and poller are stopped
    # Exactly one leader from here on: a campaigns again but b holds the lock.
    for _ in range(4):
        await asyncio.sleep(TICK)
        assert (a.pipeline.is_leader, b.pipeline.is_leader) == (False, True)
    assert await a.store.engine.run(leader.current_term) == 2


async def _not_leading(process: Process) -> bool:
    return not process.pipeline.is_leader


async def test_a_followers_admission_wakes_the_leaders_scheduler(processes: Callable[[str], object]) -> None:
    a: Process = await processes("a")  # type: ignore[misc]
    b: Process = await processes("b")  # type: ignore[misc]
    scan = 60.0  # the leader's periodic scan: far longer than the wake-up may take
    a.pipeline.scheduler.idle_check = scan
    await a.pipeline.start()
    await b.pipeline.start()
    assert a.pipeline.is_leader and not b.pipeline.is_leader
    await asyncio.sleep(0.5)  # the leader's first round (at its start) is over: it sleeps now
    for user in (1, 2, 3):
        started = time.monotonic()
        job_id = await admitted(b.store, user=user)  # admitted in the follower, NOTIFY on commit
        b.pipeline.accepted(await b.store.get_job(job_id))  # type: ignore[arg-type]
        await wait_for(lambda job_id=job_id: _left_queue(b.store, job_id), timeout=scan / 2)  # type: ignore[misc]
        print(f"\nfollower's job {user} submitted by the leader after {time.monotonic() - started:.2f}s")
        await asyncio.sleep(0.3)


async def test_pool_resume_in_a_follower_resumes_the_leaders_scheduler(
    processes: Callable[[str], object], emu: Emulator
) -> None:
    a: Process = await processes("a")  # type: ignore[misc]
    b: Process = await processes("b")  # type: ignore[misc]
    a.pipeline.scheduler.operator_pause = 600.0  # it would not probe again by itself in this test
    emu.set_credits(PRO_KEY, 0)
    await a.pipeline.start()
    await b.pipeline.start()
    assert a.pipeline.is_leader and not b.pipeline.is_leader
    job_id = await admitted(b.store)
    await wait_for(lambda: _stored_pause(b.store))
    assert await state_of(b.store, job_id) is JobState.QUEUED
    emu.set_credits(PRO_KEY, 1_000)  # the operator tops up, and a moderator runs /pool resume in B
    follower = Moderation(b.store, POLICY, b.pipeline.scheduler)
    started = time.monotonic()
    assert "credits" in (await follower.resume_submitting(6, 9) or "")
    await wait_for(lambda: _left_queue(b.store, job_id), timeout=60)
    print(f"\nresumed in the follower, submitted by the leader after {time.monotonic() - started:.2f}s")
    assert a.pipeline.scheduler.pause_reason is None
    await wait_for(lambda: _is(b.store, job_id, JobState.DELIVERED))


async def _stored_pause(store: Store) -> bool:
    return await store.pause_reason() is not None


async def _left_queue(store: Store, job_id: str) -> bool:
    return await state_of(store, job_id) is not JobState.QUEUED


UNREACHABLE = "http://127.0.0.1:9/result.mp4"  # the video cannot be fetched: the link is sent


async def finished(store: Store, user: int) -> str:
    """A job the API finished, awaiting delivery (as a leader's poller or a webhook left it)."""
    job_id = await admitted(store, user=user)
    await store.transition(job_id, JobState.SUBMITTING, expected=JobState.QUEUED)
    await store.transition(job_id, JobState.PROCESSING, expected=JobState.SUBMITTING,
                           api_job_id=f"api-{job_id}", submitted_at=time.time())  # fmt: skip
    await store.transition(job_id, JobState.COMPLETED, expected=JobState.PROCESSING,
                           result_url=UNREACHABLE, completed_at=time.time())  # fmt: skip
    return job_id


async def test_two_processes_deliver_disjoint_sets_and_every_result_once(
    processes: Callable[[str], object],
) -> None:
    a: Process = await processes("a")  # type: ignore[misc]
    b: Process = await processes("b")  # type: ignore[misc]
    for process in (a, b):
        process.pipeline.delivery.lease = 1.0  # sweeps every 0.5 s
        process.pipeline.delivery.batch = 2  # a few at a time, so both take some
        # The jobs are moved to their ends by hand here: the leader's scheduler, held, must not
        # take one of them to the API between its admission and the test's own first move.
        process.pipeline.scheduler.paused_until = time.time() + 3600
    await asyncio.gather(a.pipeline.start(), b.pipeline.start())
    # Finished while both run, with no process told in memory: the sweeps share them out.
    jobs = [await finished(a.store, user) for user in range(1, 13)]
    await wait_for(lambda: _all_delivered(a.store, jobs))
    await asyncio.sleep(1.2)  # more sweeps: nothing is sent again
    by_a = [s.job_id for s in a.messenger.sent]
    by_b = [s.job_id for s in b.messenger.sent]
    print(f"\ndelivered by a: {len(by_a)}, by b: {len(by_b)}")
    assert not set(by_a) & set(by_b)
    assert sorted(by_a + by_b) == sorted(jobs)  # each exactly once


async def _all_delivered(store: Store, jobs: list[str]) -> bool:
    return all([await _is(store, job_id, JobState.DELIVERED) for job_id in jobs])


async def test_a_dead_owners_delivery_claim_is_taken_again_after_its_lease(
    open_store: Callable[[], object], emu: Emulator
) -> None:
    store: Store = await open_store()  # type: ignore[misc]
    job_id = await finished(store, user=1)
    lease = 1.5
    # A process claimed it and died (kill -9: its claim was never released).
    assert await store.claim_delivery(job_id, "dead-process", lease) is not None
    started = time.monotonic()
    client = DoitongClient(emu.base_url, PRO_KEY)
    messenger = RecordingMessenger()
    pipeline = Pipeline(store, client, messenger, PipelineOptions(plan=PRO, delivery_lease=1.0))
    await pipeline.start()
    try:
        assert await store.claim_delivery(job_id, "someone", 1.0) is None  # the claim still holds
        await wait_for(lambda: _is(store, job_id, JobState.DELIVERED))
        took = time.monotonic() - started
        print(f"\na dead owner's delivery claim was taken again after {took:.2f}s (lease {lease}s)")
        assert took >= lease * 0.5
        assert [s.job_id for s in messenger.sent] == [job_id]
    finally:
        await pipeline.stop()
        await client.aclose()
