"""The poller's two paces: a safety net while relayed webhooks arrive, its normal pace while the
relay is unreachable (``Poller.set_webhooks``, driven by the subscriber's connection state)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.inbound.poller import Poller
from bot.jobs import Job, JobOptions, JobState
from shared import contract


class Jobs:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    async def jobs_in_states(self, states: Any, source: str | None = None) -> list[Job]:
        return self.jobs

    async def cancelled_at_api(self, since: float) -> list[Job]:
        return []

    async def expired_at_api(self, since: float) -> list[Job]:
        return []


class Api:
    def __init__(self) -> None:
        self.reads: list[list[str]] = []

    async def get_jobs(self, ids: list[str]) -> dict[str, Any]:
        self.reads.append(ids)
        return {}  # still running, as far as this test cares


def running_job() -> Job:
    now = time.time()
    return Job(
        id="j1", idempotency_key="k", state=JobState.PROCESSING, source="discord", image_ref="https://x/y.png",
        options=JobOptions(prompt="p"), estimated_credits=10, created_at=now, updated_at=now,
        api_job_id="api1", submitted_at=now,
    )  # fmt: skip


async def ended(job: Job) -> None:
    raise AssertionError("nothing ends here")


async def test_losing_the_relay_brings_the_next_read_forward_and_regaining_it_slows_down() -> None:
    api = Api()
    # window 6 s on Pro: normal pace 0.2 s between reads, the safety net reads once a window.
    poller = Poller(Jobs([running_job()]), api, contract.PLANS["pro"], on_ended=ended, window=6.0,  # type: ignore[arg-type]
                    webhooks=True)  # fmt: skip
    await poller.poll_once()  # the job is scheduled a whole window out
    await asyncio.sleep(0.3)
    await poller.poll_once()
    assert api.reads == []  # webhooks arrive: nothing read yet

    poller.set_webhooks(False)  # the relay is gone
    await asyncio.sleep(0.3)
    await poller.poll_once()
    assert api.reads == [["api1"]]  # read at the normal pace, without waiting out the window

    poller.set_webhooks(True)  # back: reads stretch towards the window again
    assert poller.max_interval == 6.0
    poller.set_webhooks(True)  # idempotent
    assert poller.webhooks
