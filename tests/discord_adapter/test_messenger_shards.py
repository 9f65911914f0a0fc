"""The messenger in a process that holds some of the shards: a job from another process's shard
is still delivered to its channel, by id through REST (the guild is not in this cache).

The client is the real AnimateBot, in this test's event loop, connected to the Discord fake as
shard 0 of 2; the server on shard 1 belongs to a process that is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

import discord
import pytest
import yarl

from bot.config import load_settings
from bot.discord_adapter.client import AnimateBot
from bot.discord_adapter.limits import DEFAULT_UPLOAD_LIMIT
from bot.discord_adapter.messenger import DiscordMessenger
from bot.jobs import Job, JobOptions, JobState
from bot.pipeline.delivery import Attachment, Route, RouteUnavailable
from testkit.fake_discord import FakeConfig, FakeDiscord

TOKEN = "shard-token"


@contextlib.asynccontextmanager
async def shard_0_of_2(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AnimateBot]:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
    bot = AnimateBot(load_settings({"DISCORD_TOKEN": TOKEN, "SHARD_COUNT": "2", "SHARD_IDS": "0"}))
    async with bot:
        task = asyncio.create_task(bot.start(TOKEN))
        try:
            await fake.wait_for_all_shards_ready(timeout=30, shard_ids=[0])
            await asyncio.wait_for(bot.wait_until_ready(), 30)
            yield bot
        finally:
            await bot.close()
            task.cancel()  # AutoShardedClient.start may outlive close()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def job_in(guild_id: int, channel_id: int) -> Job:
    """A finished job whose interaction token is gone: the channel route is next."""
    now = time.time()
    return Job(
        id="j1", idempotency_key="k1", state=JobState.COMPLETED, source="discord",
        image_ref="https://cdn.example/pic.png", options=JobOptions(prompt="x"), estimated_credits=50,
        created_at=now, updated_at=now, user_id=1, guild_id=guild_id, channel_id=channel_id,
        interaction_token=None,
    )  # fmt: skip


async def test_a_job_from_another_processs_shard_goes_to_its_channel_by_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeDiscord(FakeConfig(token=TOKEN, shard_count=2, max_concurrency=2)) as fake:
        here, there = fake.add_guild("Here", shard=0), fake.add_guild("There", shard=1)
        here_chan = fake.add_text_channel(here, "general")
        there_chan = fake.add_text_channel(there, "general")
        mute = fake.add_text_channel(there, "mute", bot_can_send=False)
        async with shard_0_of_2(fake, monkeypatch) as bot:
            messenger = DiscordMessenger(bot)
            assert bot.get_channel(here_chan.id) is not None and bot.get_channel(there_chan.id) is None

            # shard 0's own channel: the cache says what the bot may do there, as before
            assert messenger.upload_limit(job_in(here.id, here_chan.id), Route.CHANNEL) == here.filesize_limit
            # shard 1's: not cached here, so not "unavailable" but tried by id at the floor limit
            job = job_in(there.id, there_chan.id)
            assert messenger.upload_limit(job, Route.CHANNEL) == DEFAULT_UPLOAD_LIMIT
            await messenger.send(job, Route.CHANNEL, "<@1> done", Attachment("animation-j1.mp4", b"\0" * 64))
            [posted] = fake.channel_messages(there_chan)
            assert posted.route == "channel_post" and posted.attachments[0].filename == "animation-j1.mp4"
            # where it may not post, Discord says so and the route gives way to the next one
            with pytest.raises(RouteUnavailable, match="403"):
                await messenger.send(job_in(there.id, mute.id), Route.CHANNEL, "<@1> done", None)

            # a channel of one of this process's servers that is gone is unavailable, not tried
            fake.delete_channel(here_chan)
            for _ in range(100):  # until CHANNEL_DELETE reached the client
                if bot.get_channel(here_chan.id) is None:
                    break
                await asyncio.sleep(0.05)
            assert messenger.upload_limit(job_in(here.id, here_chan.id), Route.CHANNEL) is None


def test_only_the_process_with_the_servers_shard_keeps_its_card_fresh() -> None:
    # Shard 0 of 2 here; another process has shard 1. Both see every job in the shared store.
    messenger = DiscordMessenger(
        AnimateBot(load_settings({"DISCORD_TOKEN": TOKEN, "SHARD_COUNT": "2", "SHARD_IDS": "0"}))
    )
    on_shard_0, on_shard_1 = 2 << 22, 1 << 22  # (guild_id >> 22) % 2
    assert messenger.owns_card(job_in(on_shard_0, 5))
    assert not messenger.owns_card(job_in(on_shard_1, 5))
    assert messenger.owns_card(dataclasses.replace(job_in(on_shard_1, 5), guild_id=None))  # DMs: shard 0
