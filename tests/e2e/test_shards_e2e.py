"""The bot as an AutoShardedBot: the real process against the Discord fake's shards.

One process with both shards of two, one process with shard 1 of 2 (`run --shard-ids 1
--shard-count 2`), and a fake that requires sharding with no shard settings at all. Every
server below sits on a chosen shard (``add_guild(..., shard=k)``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.jobs import JobState
from emulator.server import Emulator
from testkit.accounts import emulator_config
from testkit.e2e_world import PNG
from testkit.fake_discord import FakeConfig, FakeDiscord, NoBotConnected
from testkit.harness import BotProcess

pytestmark = pytest.mark.timeout(180)


@dataclass
class ShardedWorld:
    fake: FakeDiscord
    bot: BotProcess
    guilds: list[Any]  # guilds[k] is on shard k
    channels: list[Any]
    alice: Any

    async def animate(self, shard: int) -> Any:
        return await self.fake.invoke_slash(
            "animate", user=self.alice, guild=self.guilds[shard], channel=self.channels[shard],
            options={"prompt": "the sea moves", "version": "gen-2"},
            attachments={"image": (PNG, "pic.png", "image/png")},
        )  # fmt: skip

    async def delivered(self, it: Any) -> Any:
        """The result message: the first that mentions the requester, from this interaction or
        in its channel (after the token expired)."""
        return await self.fake.wait_for(
            lambda e: (
                e.kind == "create"
                and f"<@{self.alice.id}>" in (e.content or "")
                and (e.interaction_id == it.id or e.channel_id == it.channel.id)
            ),
            timeout=60,
        )

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            answer: dict[str, Any] = (await http.get(self.bot.health_url, timeout=10)).json()
            return answer


async def logged(process: BotProcess, text: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in process.log():
        if loop.time() > deadline:
            raise AssertionError(f"never logged {text!r}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def sharded_world(
    tmp_path: Path,
    *,
    fake: dict[str, Any],
    wait_shards: list[int] | None = None,
    wait_logged_in: bool = True,
    **bot: Any,
) -> AsyncIterator[ShardedWorld]:
    """The emulator, the fake with ``fake`` (shard_count, max_concurrency, ...), a server with a
    channel on each shard, alice in both, and the bot (``bot``: BotProcess's options) started;
    waits until the fake saw ``wait_shards`` (default: every shard) ready and, unless told not
    to, the bot logged that it is (discord.py's ready: every shard of the process)."""
    emu_cfg = emulator_config(time_scale=0.02, **bot.pop("emu", {}))
    async with (
        Emulator(emu_cfg) as emulator,
        FakeDiscord(FakeConfig(token="e2e-token", **fake)) as discord,
    ):
        alice = discord.add_user("alice")
        guilds, channels = [], []
        for k in range(discord.config.shard_count):
            guild = discord.add_guild(f"Shard {k}", shard=k)
            channels.append(discord.add_text_channel(guild, "general"))
            discord.add_member(guild, alice)
            guilds.append(guild)
        process = BotProcess(tmp_path, discord, emulator.base_url, rate_window=60 * emu_cfg.time_scale, **bot)
        await process.start()
        try:
            await discord.wait_for_all_shards_ready(timeout=60, shard_ids=wait_shards)
            if wait_logged_in:
                await logged(process, "logged in as")
            yield ShardedWorld(discord, process, guilds, channels, alice)
        except BaseException:
            print(process.log()[-6000:])
            raise
        finally:
            await process.stop()


async def test_one_process_serves_both_shards(tmp_path: Path) -> None:
    async with sharded_world(tmp_path, fake={"shard_count": 2, "max_concurrency": 2}, shard_count=2) as w:
        sessions = await w.fake.wait_for_all_shards_ready(timeout=10)
        assert [s.shard for s in sessions] == [(0, 2), (1, 2)]
        its = [await w.animate(0), await w.animate(1)]
        for it in its:
            assert (await it.wait_acknowledged(timeout=3)).type == 5
        for it in its:
            done = await w.delivered(it)
            assert done.route == "followup" and done.attachments[0].filename.endswith(".mp4")
        jobs = await w.bot.wait_jobs(lambda js: [j.state for j in js] == [JobState.DELIVERED] * 2)
        assert sorted(j.guild_id for j in jobs) == sorted(g.id for g in w.guilds)
        health = await w.health()
        assert health["discord"] is True and health["shard_ids"] == [0, 1] and health["shard_count"] == 2
        assert "on shards 0,1 of 2" in w.bot.log()
        assert "shard 0 of 2 ready: 1 guilds" in w.bot.log() and "shard 1 of 2 ready: 1 guilds" in w.bot.log()
        # two buckets: both shards identified at once, neither waited (discord.py waits 5 s)
        assert w.fake.identify_violations == []
        assert "max_concurrency 2" in w.bot.log() and "for its identify turn" not in w.bot.log()


async def test_after_the_token_each_shards_channel_is_reached_from_the_cache(tmp_path: Path) -> None:
    # Tokens live 2 s and jobs take ~4 s: both results go to their channels with the bot's
    # token, each channel's permissions read from its own shard's cache.
    async with sharded_world(
        tmp_path, fake={"shard_count": 2, "max_concurrency": 2, "token_lifetime": 2.0},
        shard_count=2, emu={"processing_seconds": 200},
    ) as w:  # fmt: skip
        its = [await w.animate(0), await w.animate(1)]
        for it in its:
            await it.wait_acknowledged(timeout=3)
        for it in its:
            done = await w.delivered(it)
            assert done.route == "channel_post" and done.channel_id == it.channel.id
            assert done.attachments[0].filename.endswith(".mp4")


async def test_a_process_with_shard_1_of_2_serves_only_it(tmp_path: Path) -> None:
    async with sharded_world(
        tmp_path, fake={"shard_count": 2}, wait_shards=[1],
        run_args=["run", "--shard-ids", "1", "--shard-count", "2"],
    ) as w:  # fmt: skip
        [session] = await w.fake.wait_for_all_shards_ready(shard_ids=[1])
        assert session.shard == (1, 2) and len(w.fake.sessions) == 1
        it = await w.animate(1)
        await it.wait_acknowledged(timeout=3)
        await w.delivered(it)
        # shard 0's servers belong to another process (not running): nothing reaches this one
        with pytest.raises(NoBotConnected):
            await w.animate(0)
        health = await w.health()
        assert health["discord"] is True and health["shard_ids"] == [1] and health["shard_count"] == 2
        (job,) = await w.bot.wait_jobs(lambda js: len(js) == 1 and js[0].state is JobState.DELIVERED)
        assert job.guild_id == w.guilds[1].id


async def test_when_discord_requires_sharding_the_bot_asks_for_the_count(tmp_path: Path) -> None:
    async with sharded_world(tmp_path, fake={"shard_count": 2, "require_sharding": True}) as w:
        assert ("GET", "GET /gateway/bot") in [(r.method, r.route) for r in w.fake.requests]
        assert [c.close_code for c in w.fake.gateway.connections if c.close_code == 4011] == []
        # max_concurrency 1: shard 1 waited for shard 0's window, and Discord refused nothing
        assert "shard 1 waits" in w.bot.log() and w.fake.identify_violations == []
        # `sync` logs in and publishes over REST only: no gateway session of its own
        connections = len(w.fake.gateway.connections)
        code, out = await w.bot.run_command("sync", "--guild", str(w.guilds[1].id))
        assert code == 0 and "published 13 commands" in out, out
        assert len(w.fake.gateway.connections) == connections
        it = await w.animate(1)
        await it.wait_acknowledged(timeout=3)
        await w.delivered(it)
        health = await w.health()
        assert health["shard_ids"] == [0, 1] and health["shard_count"] == 2


async def test_stopped_while_a_shard_waits_its_turn_the_process_still_exits(tmp_path: Path) -> None:
    # max_concurrency 1: shard 1 waits ~5 s for its identify turn after shard 0; SIGTERM then.
    # (discord.py's launch would retry that shard every 5 s forever on a closed client.)
    async with sharded_world(
        tmp_path, fake={"shard_count": 2}, shard_count=2, wait_shards=[0], wait_logged_in=False
    ) as w:
        assert len(w.fake.sessions) == 1
        assert await w.bot.stop() == 0  # not killed after its stop_timeout
        assert "stopping: jobs in flight stay recorded" in w.bot.log()


async def test_two_processes_started_together_split_the_shards(tmp_path: Path) -> None:
    # max_concurrency 1: both processes' first IDENTIFY is in bucket 0 at once. Neither knows of
    # the other: Discord (the fake) refuses the second with op 9 and discord.py identifies again
    # a window later. Each process then serves its own shard's server.
    (tmp_path / "p0").mkdir()
    async with sharded_world(
        tmp_path / "p0", fake={"shard_count": 2}, shard_count=2, shard_ids=[0],
        wait_shards=[], wait_logged_in=False,
    ) as w:  # fmt: skip
        other = BotProcess(tmp_path, w.fake, w.bot.env["DOITONG_API_URL"], shard_count=2, shard_ids=[1])
        await other.start()
        try:
            await w.fake.wait_for_all_shards_ready(timeout=60)
            await logged(w.bot, "logged in as")
            await logged(other, "logged in as")
            assert all(v.kind == "max_concurrency" for v in w.fake.identify_violations)
            for k in (0, 1):
                it = await w.animate(k)
                await it.wait_acknowledged(timeout=3)
                await w.delivered(it)
            assert [j.guild_id for j in await w.bot.jobs()] == [w.guilds[0].id]
            assert [j.guild_id for j in await other.jobs()] == [w.guilds[1].id]
        except BaseException:
            print(other.log()[-6000:])
            raise
        finally:
            await other.stop()


async def test_two_processes_on_one_database_take_identify_turns_between_them(
    tmp_path: Path, postgres_url: str
) -> None:
    # As above (max_concurrency 1, both first IDENTIFYs in bucket 0), but the processes share a
    # PostgreSQL store, whose turns pace them: Discord (the fake) refuses no IDENTIFY.
    shared = {"DATABASE_URL": postgres_url}
    (tmp_path / "p0").mkdir()
    async with sharded_world(
        tmp_path / "p0", fake={"shard_count": 2}, shard_count=2, shard_ids=[0],
        wait_shards=[], wait_logged_in=False, extra=shared,
    ) as w:  # fmt: skip
        other = BotProcess(
            tmp_path, w.fake, w.bot.env["DOITONG_API_URL"], shard_count=2, shard_ids=[1], extra=shared
        )
        await other.start()
        try:
            await w.fake.wait_for_all_shards_ready(timeout=60)
            await logged(w.bot, "logged in as")
            await logged(other, "logged in as")
            assert w.fake.identify_violations == []
            assert "waits" in w.bot.log() + other.log()  # the later one waited for its turn
            for k in (0, 1):
                it = await w.animate(k)
                await it.wait_acknowledged(timeout=3)
                await w.delivered(it)
        except BaseException:
            print(other.log()[-6000:])
            raise
        finally:
            await other.stop()
