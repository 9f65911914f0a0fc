"""The books mirror the bill: after a run with cancels at every stage (queued in the bot,
rendering at the API) and a CLI job beside it, the pools' charges plus the CLI's job equal what
the emulator billed the API account, to the credit."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import JobState
from bot.store import Store
from testkit.books import ledger_sum
from testkit.e2e_world import PNG, World, world

pytestmark = pytest.mark.timeout(300)

START = 100_000  # the pro account's credits (testkit.accounts)


async def cancel(w: World, user: Any, job_id: str) -> str:
    it = await w.fake.invoke_slash(
        "cancel", user=user, guild=w.guild, channel=w.channel, options={"job_id": job_id}
    )
    (answer,) = await it.wait_for_messages(n=1, timeout=15)
    text: str = answer.content
    return text


async def pool_paid(w: World) -> int:
    """Credits the server's pool paid for jobs: minus its reservations and settlements."""
    store = await Store.open(w.bot.db)
    try:
        rows = await store.ledger_rows(w.guild.id, limit=1000)
        guild = await store.get_guild(w.guild.id)
        assert guild is not None and guild.balance == await ledger_sum(store, w.guild.id)
        settled = Counter(r.job_id for r in rows if r.kind == "settle")
        assert all(n == 1 for n in settled.values())
        return -sum(r.amount for r in rows if r.kind in ("reserve", "settle"))
    finally:
        await store.close()


async def test_pools_and_the_cli_pay_exactly_what_the_api_billed(tmp_path: Path) -> None:
    # ~8 s per job at the API, ten at a time (Pro): twelve jobs leave two in the bot's queue.
    async with world(tmp_path, emu={"processing_seconds": 400}) as w:
        people = [w.alice, w.bob, w.mod] * 4
        for person in people:
            it = await w.animate(person, version="gen-2")
            await it.wait_acknowledged(timeout=3)
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 12 and Counter(j.state for j in js)[JobState.PROCESSING] == 10, timeout=60
        )
        picture = tmp_path / "cli.png"
        picture.write_bytes(PNG)
        cli = asyncio.create_task(
            w.bot.run_command("animate", str(picture), "--prompt", "waves", "--version", "gen-2",
                              "--out", str(tmp_path / "cli.mp4"))
        )  # fmt: skip
        owner = {p.id: p for p in people}
        queued = [j for j in jobs if j.state is JobState.QUEUED]
        rendering = [j for j in jobs if j.state is JobState.PROCESSING][:3]
        for job in queued:  # never reached the API: refunded at once
            assert "Nothing is charged" in await cancel(w, owner[job.user_id], job.id)
        for job in rendering:  # the API runs them to their end and bills them
            assert "runs to its end" in await cancel(w, owner[job.user_id], job.id)

        code, out = await cli
        assert code == 0, out
        # Everything ended at the API, and every job's pool settled once (the cancelled ones
        # when the API's end was seen).
        for _ in range(600):
            stats = w.api_stats()
            ended = await w.bot.jobs()
            if stats["active_jobs"] == 0 and await _all_settled(w, ended):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"not all settled: {Counter(j.state for j in ended)}")
        billed = START - w.api_stats()["credits"]
        cli_paid = sum(j.actual_credits or 0 for j in ended if j.source == "cli")
        assert cli_paid > 0
        assert await pool_paid(w) + cli_paid == billed
        assert (
            billed == 11 * 10
        )  # gen-2, 5 s: ten jobs reached the API (three cancelled there), and the CLI's


async def _all_settled(w: World, jobs: list[Any]) -> bool:
    if not all(j.state in (JobState.DELIVERED, JobState.CANCELLED) for j in jobs if j.source == "discord"):
        return False
    store = await Store.open(w.bot.db)
    try:
        rows = await store.ledger_rows(w.guild.id, limit=1000)
    finally:
        await store.close()
    return sum(1 for r in rows if r.kind == "settle") == 12


@pytest.mark.parametrize("webhooks", [True, False], ids=["webhook", "polling"])
async def test_a_job_the_bot_stopped_waiting_for_pays_what_the_api_billed_when_it_ends(
    tmp_path: Path, webhooks: bool
) -> None:
    # The bot waits 2 s (JOB_TIMEOUT); the API takes ~6 s and bills the account when it ends.
    async with world(
        tmp_path, emu={"processing_seconds": 300}, webhooks=webhooks, extra={"JOB_TIMEOUT": "2"}
    ) as w:
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        notice = await w.fake.wait_for(lambda e: "did not finish" in (e.content or ""), timeout=30)
        assert notice.attachments == []
        # Later the API ends it, billed; the card says so and the pool pays exactly that.
        card = await w.fake.wait_for(lambda e: "finished it anyway" in str(e.embeds), timeout=30)
        assert "10 credits charged" in str(card.embeds)
        billed = START - w.api_stats()["credits"]
        assert billed == 10  # gen-2, 5 s
        assert await pool_paid(w) == billed
