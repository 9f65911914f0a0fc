"""The client's part of the receiver's /healthz, and the shards it knows are its own."""

from __future__ import annotations

import json

from bot.config import load_settings
from bot.discord_adapter.client import AnimateBot


async def test_health_before_the_first_heartbeat_is_an_answer_not_an_error() -> None:
    # discord.py's latency is NaN until a shard connects and inf until its heartbeat is
    # acknowledged; the receiver listens before the gateway is up, and /healthz must answer (not
    # fail on round(NaN)) in that window. (An AutoShardedBot is closed only once entered.)
    async with AnimateBot(load_settings({"DISCORD_TOKEN": "not-a-real-token"})) as bot:
        health = bot.health()
        assert health == {"discord": False, "latency_ms": None, "shard_ids": None, "shard_count": None}
        assert json.loads(json.dumps(health)) == health  # what the receiver serialises


async def test_the_process_knows_its_shards_and_their_guilds() -> None:
    on_shard = {k: (1000 + k) << 22 for k in range(4)}  # a snowflake whose shard is k of 4
    settings = load_settings({"DISCORD_TOKEN": "t", "SHARD_COUNT": "4", "SHARD_IDS": "3,1"})
    async with AnimateBot(settings) as bot:
        assert (bot.shard_count, bot.shard_ids) == (4, [3, 1])
        assert bot.health()["shard_ids"] == [1, 3] and bot.health()["shard_count"] == 4
        assert [bot.serves_guild(g) for g in on_shard.values()] == [False, True, False, True]
    async with AnimateBot(load_settings({"DISCORD_TOKEN": "t", "SHARD_COUNT": "2"})) as everything:
        assert everything.own_shard_ids == [0, 1] and everything.serves_guild(on_shard[3])
    async with AnimateBot(load_settings({"DISCORD_TOKEN": "t"})) as unknown:  # counted at connect
        assert unknown.own_shard_ids is None and not unknown.serves_guild(on_shard[0])
