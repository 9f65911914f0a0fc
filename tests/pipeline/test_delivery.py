"""Delivery's workers: a slow result does not hold up everyone else's, and one member's
results still arrive in the order they finished."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from bot.pipeline.delivery import Delivery
from bot.store import Store
from testkit.recording_messenger import RecordingMessenger
from tests.pipeline.test_leader import finished
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
