"""A world for end-to-end tests: the API emulator and the Discord fake on loopback, one server
with a channel and three members (alice, bob, and mod who may manage it), and the real bot
(``python -m bot``) as a subprocess logged in to the fake."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.server import Emulator
from testkit.accounts import emulator_config
from testkit.fake_discord import FakeConfig, FakeDiscord
from testkit.harness import BotProcess
from testkit.images import picture

PNG = picture(320, 180)


@dataclass
class World:
    fake: FakeDiscord
    emu: Emulator
    bot: BotProcess
    guild: Any
    channel: Any
    alice: Any
    bob: Any
    mod: Any

    async def animate(
        self, user: Any = None, *, image: bytes = PNG, filename: str = "pic.png",
        content_type: str = "image/png", dm: bool = False, limit: int | None = None, **options: Any,
    ) -> Any:  # fmt: skip
        user = user or self.alice
        opts = {"prompt": "the sea moves"} | options
        where: dict[str, Any] = {} if dm else {"guild": self.guild, "channel": self.channel}
        return await self.fake.invoke_slash(
            "animate", user=user, options=opts, attachments={"image": (image, filename, content_type)},
            attachment_size_limit=limit, **where,
        )  # fmt: skip

    def api_stats(self, label: str = "pro") -> dict[str, Any]:
        stats: dict[str, Any] = self.emu.stats()["accounts"][label]
        return stats


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    *,
    emu: dict[str, Any] | None = None,
    fake: dict[str, Any] | None = None,
    **bot: Any,
) -> AsyncIterator[World]:
    emu_cfg = emulator_config(time_scale=0.02, **(emu or {}))
    async with (
        Emulator(emu_cfg) as emulator,
        FakeDiscord(FakeConfig(token="e2e-token", **(fake or {}))) as discord,
    ):
        guild = discord.add_guild("Harbour")
        channel = discord.add_text_channel(guild, "general")
        alice, bob, mod = discord.add_user("alice"), discord.add_user("bob"), discord.add_user("mod")
        discord.add_member(guild, alice)
        discord.add_member(guild, bob)
        discord.add_member(guild, mod, manage_guild=True)
        process = BotProcess(tmp_path, discord, emulator.base_url, rate_window=60 * emu_cfg.time_scale, **bot)
        await process.start()
        try:
            await discord.wait_for_ready(timeout=30)
            yield World(discord, emulator, process, guild, channel, alice, bob, mod)
        except BaseException:
            print(process.log()[-6000:])
            raise
        finally:
            await process.stop()
