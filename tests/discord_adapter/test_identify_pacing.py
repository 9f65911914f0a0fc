"""before_identify_hook: one IDENTIFY per bucket (shard_id % max_concurrency) per window, on a
virtual clock (no real waiting)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest

from bot.config import load_settings
from bot.discord_adapter.client import IDENTIFY_MARGIN, IDENTIFY_WINDOW, AnimateBot

WINDOW = IDENTIFY_WINDOW + IDENTIFY_MARGIN


class Paced:
    """The bot with GET /gateway/bot answered by hand and time that moves only when it sleeps."""

    def __init__(self, bot: AnimateBot, max_concurrency: int | Exception) -> None:
        self.bot, self.now, self.asked = bot, 0.0, 0
        self.identified: list[tuple[int, float]] = []

        async def limits() -> discord.SessionStartLimits:
            self.asked += 1
            if isinstance(max_concurrency, Exception):
                raise max_concurrency
            return discord.SessionStartLimits(
                total=1000, remaining=990, reset_after=3_600_000, max_concurrency=max_concurrency
            )

        async def sleep(seconds: float) -> None:
            self.now += seconds

        bot.fetch_session_start_limits = limits  # type: ignore[method-assign]
        bot._clock, bot._sleep = lambda: self.now, sleep

    async def identify(self, *shards: int) -> list[float]:
        """Each shard's IDENTIFY in turn, as discord.py launches them: when each was let go."""
        times = []
        for shard in shards:
            await self.bot.before_identify_hook(shard, initial=shard == shards[0])
            times.append(self.now)
        return times


@pytest.fixture
async def bot() -> AsyncIterator[AnimateBot]:
    async with AnimateBot(load_settings({"DISCORD_TOKEN": "t"})) as client:
        yield client


async def test_buckets_identify_together_and_each_waits_only_for_itself(bot: AnimateBot) -> None:
    paced = Paced(bot, max_concurrency=2)
    assert await paced.identify(0, 1, 2, 3, 4, 5) == [0, 0, WINDOW, WINDOW, 2 * WINDOW, 2 * WINDOW]
    assert paced.asked == 1  # the limits are asked once per process


async def test_max_concurrency_16_starts_16_shards_at_once(bot: AnimateBot) -> None:
    paced = Paced(bot, max_concurrency=16)
    assert await paced.identify(*range(17)) == [0.0] * 16 + [WINDOW]


async def test_one_bucket_is_discord_pys_pace_and_a_retry_waits_its_turn(bot: AnimateBot) -> None:
    paced = Paced(bot, max_concurrency=1)
    assert await paced.identify(0, 1) == [0, WINDOW]
    # op 9 for shard 1 (another process identified in bucket 0): its new IDENTIFY waits a window
    await bot.before_identify_hook(1)
    assert paced.now == 2 * WINDOW


async def test_without_the_limits_it_keeps_to_one_per_window(bot: AnimateBot) -> None:
    paced = Paced(bot, max_concurrency=discord.GatewayNotFound())
    assert await paced.identify(0, 1, 2) == [0, WINDOW, 2 * WINDOW]
    assert paced.asked == 3  # not remembered: the next IDENTIFY asks again
