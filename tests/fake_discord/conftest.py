"""Fixtures for testing the Discord fake with small in-process discord.py clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator

import discord
import pytest
import yarl
from discord.ext import commands
from PIL import Image

from testkit.fake_discord import FakeConfig, FakeDiscord

TOKEN = "test-bot-token"


def png_bytes(size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def make_bot(**kwargs: object) -> commands.Bot:
    """A small commands.Bot (not the project's bot) with quick start-up."""
    intents = discord.Intents.default()
    return commands.Bot(
        command_prefix="!",
        intents=intents,
        guild_ready_timeout=0.05,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def point_discord_py(monkeypatch: pytest.MonkeyPatch) -> object:
    """Returns a function that points discord.py at a fake (restored after the test)."""

    def point(fake: FakeDiscord) -> None:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))

    return point


@pytest.fixture
async def fake(point_discord_py: object) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(FakeConfig(token=TOKEN)) as f:
        point_discord_py(f)  # type: ignore[operator]
        yield f


@contextlib.asynccontextmanager
async def running(
    client: discord.Client, fake: FakeDiscord, *, ready_count: int | None = None
) -> AsyncIterator[discord.Client]:
    """Start ``client`` against ``fake``, wait until both sides are ready, close it afterwards."""
    task = asyncio.create_task(client.start(fake.config.token))
    try:
        await fake.wait_for_ready(timeout=10, count=ready_count)
        await asyncio.wait_for(client.wait_until_ready(), 10)
        yield client
    finally:
        await client.close()
        # Client.start returns after close(); AutoShardedClient.start may not: cancel it then.
        done, _ = await asyncio.wait({task}, timeout=1)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
