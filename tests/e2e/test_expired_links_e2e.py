"""Discord's attachment URLs expire (about a day; seconds in the fake here). A job that waited
past its URL's end, and Animate again on an old card, still reach the API with the picture the
bot kept; with keeping off, Animate again says so privately."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import JobState
from testkit.accounts import FREE_KEY
from testkit.e2e_world import World, world

pytestmark = pytest.mark.timeout(240)

TTL = 3.0  # seconds an attachment URL lives in the fake


async def card_of(w: World, it: Any) -> Any:
    return await w.fake.wait_for(lambda e: e.interaction_id == it.id and bool(e.embeds), timeout=15)


async def all_delivered(w: World, n: int) -> list[Any]:
    return await w.bot.wait_jobs(
        lambda js: len(js) == n and all(j.state is JobState.DELIVERED for j in js), timeout=90
    )


async def test_animate_again_on_a_card_whose_picture_link_expired(tmp_path: Path) -> None:
    async with world(tmp_path, fake={"attachment_url_ttl": TTL}) as w:
        first = await w.animate(version="gen-2")
        await first.wait_acknowledged(timeout=3)
        card = await card_of(w, first)
        (job,) = await all_delivered(w, 1)
        await asyncio.sleep(TTL + 1)  # the attachment URL answers 404 from now on
        again = await w.fake.click_button(card.message, f"job:again:{job.id}", user=w.alice)
        await again.wait_acknowledged(timeout=3)
        jobs = await all_delivered(w, 2)
        assert len({j.image_sha256 for j in jobs}) == 1 and jobs[0].image_sha256 is not None
        assert w.api_stats()["jobs_created"] == 2


async def test_a_job_that_waited_past_its_links_end_is_still_submitted(tmp_path: Path) -> None:
    # The free account runs one job at a time; the first takes ~6 s, so the second waits past
    # its URL's end in the bot's queue.
    async with world(
        tmp_path, fake={"attachment_url_ttl": TTL}, emu={"processing_seconds": 300}, api_key=FREE_KEY,
        plan="free",
    ) as w:  # fmt: skip
        for _ in range(2):
            it = await w.animate(version="gen-2")
            await it.wait_acknowledged(timeout=3)
        jobs = await all_delivered(w, 2)
        assert all(j.error is None for j in jobs)


async def test_with_keeping_off_animate_again_on_an_expired_card_says_so(tmp_path: Path) -> None:
    async with world(tmp_path, fake={"attachment_url_ttl": TTL}, extra={"PICTURE_KEEP_MB": "0"}) as w:
        first = await w.animate(version="gen-2")
        await first.wait_acknowledged(timeout=3)
        card = await card_of(w, first)
        (job,) = await all_delivered(w, 1)
        await asyncio.sleep(TTL + 1)
        again = await w.fake.click_button(card.message, f"job:again:{job.id}", user=w.alice)
        await again.wait_acknowledged(timeout=3)
        reply = await w.fake.wait_for(lambda e: e.interaction_id == again.id and e.ephemeral, timeout=15)
        assert "no longer kept" in reply.content and "attach it again" in reply.content
        assert len(await w.bot.jobs()) == 1
