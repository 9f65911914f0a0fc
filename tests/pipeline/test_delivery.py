"""Delivery's workers: a slow result does not hold up everyone else's, and one member's
results still arrive in the order they finished. A job asked where the bot is not skips the
channel."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from bot.jobs import Job, JobOptions, JobState
from bot.pipeline.delivery import Delivery, Route, routes_for
from bot.store import NewJob, Store
from testkit.recording_messenger import RecordingMessenger
from tests.pipeline.test_leader import UNREACHABLE, finished
from tests.pipeline.test_pipeline import wait_for


async def test_a_slow_delivery_does_not_hold_up_other_members_and_keeps_one_members_order(
    store: Store,
) -> None:
    slow, later = await finished(store, user=1), await finished(store, user=1)
    others = [await finished(store, user=u) for u in (2, 3, 4)]
    messenger = RecordingMessenger(gates={slow: asyncio.Event()})
    async with httpx.AsyncClient() as http:
        delivery = Delivery(store, messenger, http)
        for job_id in (slow, later, *others):
            job = await store.get_job(job_id)
            assert job is not None
            delivery.enqueue(job)
        runner = asyncio.create_task(delivery.run())
        try:
            # Member 1's first upload hangs; members 2-4 get theirs meanwhile.
            await wait_for(lambda: _sent(messenger, others))
            assert [s.job_id for s in messenger.sent if s.job_id in (slow, later)] == []  # 1's second waits
            messenger.gates[slow].set()
            await wait_for(lambda: _sent(messenger, [slow, later]))
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
    mine = [s.job_id for s in messenger.sent if s.job_id in (slow, later)]
    assert mine == [slow, later]  # in the order they finished
    assert sorted(s.job_id for s in messenger.sent) == sorted([slow, later, *others])  # each once


async def _sent(messenger: RecordingMessenger, job_ids: list[str]) -> bool:
    return set(job_ids) <= {s.job_id for s in messenger.sent}


async def user_installed_and_completed(store: Store, user: int) -> Job:
    """A finished job asked where the bot is not (a user install in server 6, channel 5)."""
    new = NewJob(source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"),
                 user_id=user, channel_id=5, user_install=True, asked_in_guild_id=6)  # fmt: skip
    job = await store.insert_job(new, now=time.time())
    for state, more in ((JobState.SUBMITTING, {}), (JobState.PROCESSING, {"api_job_id": f"api-{job.id}"}),
                        (JobState.COMPLETED, {"result_url": UNREACHABLE})):  # fmt: skip
        job = await store.transition(job.id, state, **more)
    return job


async def test_a_user_installed_job_goes_by_token_then_by_dm_never_to_the_channel(store: Store) -> None:
    # The messenger would take the channel route: the rule, not Discord, keeps the job out of it.
    job = await user_installed_and_completed(store, user=8)
    assert routes_for(job) == (Route.INTERACTION, Route.DM)
    limits: dict[Route, int | None] = {Route.INTERACTION: None, Route.CHANNEL: 1 << 20, Route.DM: 1 << 20}
    messenger = RecordingMessenger(limits=limits)
    async with httpx.AsyncClient() as http:
        assert await Delivery(store, messenger, http).deliver(job)
    assert [(s.job_id, s.route) for s in messenger.sent] == [(job.id, Route.DM)]
    delivered = await store.get_job(job.id)
    assert delivered is not None and delivered.delivery_note == "direct message: text"


async def test_with_the_token_dead_and_dms_closed_a_user_installed_job_ends_undeliverable(
    store: Store,
) -> None:
    job = await user_installed_and_completed(store, user=9)
    # The token has died and the DM is refused; the channel would take it, but is never tried.
    limits: dict[Route, int | None] = {Route.INTERACTION: 1 << 20, Route.CHANNEL: 1 << 20, Route.DM: 1 << 20}
    messenger = RecordingMessenger(limits=limits, unavailable={Route.INTERACTION, Route.DM})
    async with httpx.AsyncClient() as http:
        delivery = Delivery(store, messenger, http)
        delivery.retry_delays = ()  # no more tries: this failure is the last
        assert not await delivery.deliver(job)
    ended = await store.get_job(job.id)
    assert ended is not None and ended.state is JobState.DELIVERED
    assert ended.delivery_note == "undeliverable: no route reached the requester"
    assert messenger.sent == []
