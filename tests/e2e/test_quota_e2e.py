"""Quotas, pools and moderator controls end to end: the real bot process, the Discord fake and
the time-scaled API emulator, over loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import JobState
from bot.store import Store
from testkit.books import ledger_sum
from testkit.e2e_world import PNG, World, world

pytestmark = pytest.mark.timeout(300)


async def command(w: World, name: str, user: Any = None, **options: Any) -> Any:
    """Run a slash command as ``user`` (the moderator by default) and return its one reply."""
    it = await w.fake.invoke_slash(
        name, user=user or w.mod, guild=w.guild, channel=w.channel, options=options or None
    )
    (answer,) = await it.wait_for_messages(n=1, timeout=15)
    assert answer.ephemeral
    return answer


async def refusal(w: World, it: Any) -> str:
    await it.wait_acknowledged(timeout=3)
    reply = await w.fake.wait_for(lambda e: e.interaction_id == it.id and e.ephemeral, timeout=15)
    content: str = reply.content
    return content


async def delivery(w: World, user: Any, n: int) -> Any:
    """The ``n``-th public message (1-based) that mentions ``user``: their n-th result or notice
    (moderators' private replies mention members too)."""
    mention = f"<@{user.id}>"

    def mentions() -> list[Any]:
        return [
            e for e in w.fake.events
            if e.kind == "create" and not e.ephemeral and mention in (e.content or "")
        ]  # fmt: skip

    await w.fake.wait_until(lambda: len(mentions()) >= n, 60, f"message #{n} to {user}")
    return mentions()[n - 1]


async def pool_state(w: World) -> tuple[int, int]:
    """(balance, sum of the ledger) of the test server's pool, read from the bot's database."""
    store = await Store.open(w.bot.db)
    try:
        guild = await store.get_guild(w.guild.id)
        assert guild is not None
        return guild.balance, await ledger_sum(store, w.guild.id)
    finally:
        await store.close()


async def test_moderators_set_plans_blocks_and_channels_and_every_action_is_audited(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        code, out = await w.bot.run_command("sync", "--guild", str(w.guild.id))
        assert code == 0, out
        patrons = w.fake.add_role(w.guild, "Patrons")
        carol = w.fake.add_user("carol")
        w.fake.add_member(w.guild, carol, roles=[patrons])

        # A member without Manage Server is refused, and nothing changes.
        answer = await command(w, "quota set", user=w.alice, member=w.bob, plan="enterprise")
        assert "Only moderators" in answer.content and "nothing was changed" in answer.content
        assert "No moderator actions yet" in (await command(w, "quota audit")).content
        bot_default = (await command(w, "credits", user=w.bob)).content
        assert "You are on the **Pro** plan (bot default)" in bot_default

        # Server default < best role < per-member override.
        await command(w, "quota default", plan="free")
        await command(w, "quota role", role=patrons, plan="starter")
        await command(w, "quota set", member=w.alice, plan="enterprise")
        assert "**Free** plan (server default)" in (await command(w, "credits", user=w.bob)).content
        assert "**Starter** plan (role" in (await command(w, "credits", user=carol)).content
        shown = await command(w, "quota show", member=w.alice)
        assert "**Enterprise** plan (override)" in shown.content

        # A blocked member is told why and no job is written; unblocked, they can animate again.
        await command(w, "quota block", member=w.bob, reason="spamming the channel")
        text = await refusal(w, await w.animate(w.bob, version="gen-2"))
        assert "blocked" in text and "spamming the channel" in text
        assert await w.bot.jobs() == []
        await command(w, "quota unblock", member=w.bob)
        ok = await w.animate(w.bob, version="gen-2")
        await ok.wait_acknowledged(timeout=3)
        await delivery(w, w.bob, 1)

        # Channels: deny one; once any channel is allowed, only allowed channels work.
        other = w.fake.add_text_channel(w.guild, "art")
        await command(w, "animate-channels deny", channel=w.channel)
        assert "not allowed in this channel" in await refusal(w, await w.animate(w.alice, version="gen-2"))
        await command(w, "animate-channels allow", channel=other)
        allowed = await w.fake.invoke_slash(
            "animate", user=w.alice, guild=w.guild, channel=other,
            options={"prompt": "waves", "version": "gen-2"},
            attachments={"image": (PNG, "p.png", "image/png")},
        )  # fmt: skip
        await allowed.wait_acknowledged(timeout=3)
        await delivery(w, w.alice, 1)
        assert len(await w.bot.jobs()) == 2  # bob's and alice's in #art, nothing from the refusals

        audit = (await command(w, "quota audit")).content
        for action in ("quota default", "quota role", "quota set", "quota block", "quota unblock"):
            assert f"**{action}**" in audit
        assert audit.count("**animate-channels**") == 2
        assert f"<@{w.alice.id}>" not in audit.split("**quota set**")[0]  # alice's attempt left no row
        assert f"<@{w.mod.id}>" in audit


async def test_the_pool_reserves_settles_refunds_and_refuses_with_the_numbers(tmp_path: Path) -> None:
    # A 200-credit welcome. gen-3 at 5 s costs 25; gen-4 at 10 s with high motion costs 200.
    async with world(tmp_path, extra={"POOL_WELCOME_CREDITS": "200"}) as w:
        await command(w, "pool alert", threshold=180, channel=w.channel)
        first = await w.animate(version="gen-3")
        await first.wait_acknowledged(timeout=3)
        delivered = await delivery(w, w.alice, 1)
        assert "25 credits" in delivered.content
        assert await pool_state(w) == (175, 175)
        alert = await w.fake.wait_for(lambda e: e.kind == "create" and LOW in (e.content or ""), timeout=15)
        assert alert.channel_id == w.channel.id and "**175**" in alert.content

        # Too dear for the pool: refused with the numbers, nothing written or charged.
        text = await refusal(w, await w.animate(version="gen-4", duration=10, motion="high"))
        assert "needs 200, pool has 175" in text
        assert len(await w.bot.jobs()) == 1

        # A failed job is refunded in full; the alert does not repeat while the pool stays low.
        w.emu.inject(["fail_job"])
        failed = await w.animate(version="gen-3")
        await failed.wait_acknowledged(timeout=3)
        assert "failed" in (await delivery(w, w.alice, 2)).content
        await w.bot.wait_jobs(lambda js: len(js) == 2 and all(j.state is JobState.DELIVERED for j in js))
        assert await pool_state(w) == (175, 175)

        # The allowance caps one member's day; /credits says what is left.
        await command(w, "pool allowance", amount=30)
        credits = (await command(w, "credits", user=w.alice)).content
        assert "5 of 30 credits left" in credits and "Can still spend: **5**" in credits
        assert "needs 25, you have 5 of 30" in await refusal(w, await w.animate(version="gen-3"))
        assert len(await w.bot.jobs()) == 2

        # A top-up above the line re-arms the alert: the next crossing alerts once more.
        await command(w, "pool topup", amount=20)
        shown = (await command(w, "pool show")).content
        assert "**Pool: 195 credits**" in shown and "topup **+20**" in shown
        assert len(alerts(w)) == 1
        again = await w.animate(w.bob, version="gen-3")
        await again.wait_acknowledged(timeout=3)
        await delivery(w, w.bob, 1)
        assert await pool_state(w) == (170, 170)
        assert len(alerts(w)) == 2


LOW = "below the alert line"


def alerts(w: World) -> list[Any]:
    return [e for e in w.fake.events if e.kind == "create" and LOW in (e.content or "")]


async def test_free_plan_limit_holds_across_a_restart_and_frees_when_the_job_ends(tmp_path: Path) -> None:
    async with world(
        tmp_path, emu={"processing_seconds": 300}, extra={"DEFAULT_USER_PLAN": "free"}
    ) as w:  # ~6 s jobs
        first = await w.animate(version="gen-2")
        await first.wait_acknowledged(timeout=3)
        await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        await w.bot.kill()
        await w.bot.start()
        await w.fake.wait_for_ready(timeout=30, count=2)
        text = await refusal(w, await w.animate(version="gen-2"))
        assert "already have 1 animation running" in text and "Free plan" in text
        await delivery(w, w.alice, 1)
        again = await w.animate(version="gen-2")
        await again.wait_acknowledged(timeout=3)
        await delivery(w, w.alice, 2)
        assert w.api_stats()["jobs_created"] == 2


def jain(counts: list[int]) -> float:
    """Jain's fairness index: 1.0 when everyone got the same, 1/n when one got everything."""
    return sum(counts) ** 2 / (len(counts) * sum(c * c for c in counts))


async def test_200_animations_from_20_members_share_a_pro_account_fairly(tmp_path: Path) -> None:
    async with world(
        tmp_path,
        emu={"processing_seconds": 60},  # ~1.2 s per job at the emulator's time scale
        extra={"POOL_WELCOME_CREDITS": "100000", "DEFAULT_USER_PLAN": "pro"},
    ) as w:
        members = [w.fake.add_user(f"member{i:02d}") for i in range(20)]
        for m in members:
            w.fake.add_member(w.guild, m)
        peak = 0

        async def watch_api() -> None:
            nonlocal peak
            while True:
                peak = max(peak, w.api_stats()["active_jobs"])
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch_api())
        # The order that starves people under first-come-first-served: each member's ten
        # commands arrive together, member after member.
        interactions = [await w.animate(m, version="gen-2") for m in members for _ in range(10)]
        for it in interactions:
            await it.wait_acknowledged(timeout=5)
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 200 and all(j.state is JobState.DELIVERED for j in js), timeout=240
        )
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

        stats = w.api_stats()
        assert stats["rate_limited"] == 0 and w.emu.stats()["responses_by_status"].get("429", 0) == 0
        assert 0 < peak <= 10
        assert stats["jobs_created"] == 200 and all(j.outcome == "completed" for j in jobs)

        await asyncio.sleep(1.0)  # let any duplicate show itself
        deliveries = [
            e for e in w.fake.events
            if e.kind == "create" and e.attachments
            and any(f"<@{m.id}>" in (e.content or "") for m in members)
        ]  # fmt: skip
        per_member = Counter(next(m.id for m in members if f"<@{m.id}>" in e.content) for e in deliveries)
        assert len(deliveries) == 200 and set(per_member.values()) == {10}  # each exactly once

        # Fairness over the first half of completions: a fair share is 5 each. The first wave
        # goes to whoever is queued when slots are free (member00 may get all 10); after that
        # round-robin serves everyone, so nobody is starved and the spread stays narrow.
        first_half = sorted(deliveries, key=lambda e: e.time)[:100]
        share = Counter(next(m.id for m in members if f"<@{m.id}>" in e.content) for e in first_half)
        counts = [share.get(m.id, 0) for m in members]
        print(f"first-half completions per member: {counts}; Jain's index {jain(counts):.3f}")
        assert min(counts) >= 3, counts
        assert jain(counts) >= 0.85, counts

        # The pool: the balance is the ledger's sum, and exactly what the API billed was taken.
        billed = sum(j["creditCost"] or 0 for j in w.emu.stats()["jobs"] if j["label"] == "pro")
        balance, ledger = await pool_state(w)
        assert balance == ledger == 100_000 - billed
        assert billed == sum(j.actual_credits or 0 for j in jobs) == 200 * 10  # gen-2, 5 s: 10 credits each
