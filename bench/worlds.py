"""What the end-to-end benchmarks (ack, budget, delivery) share: a world of real pieces.

A world is the API emulator and the Discord fake on loopback in this process, one server with
one channel and as many members as asked, and a bot process logged in to the fake: the real
bot (``python -m bot``, started as ``testkit.harness.BotProcess`` starts it) or the minimal
bot of ``bench/minimal_bot.py``. Also small statistics helpers (percentiles, Jain's index) and
the clock conversion the delivery benchmark needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT
from emulator.server import Emulator
from testkit.accounts import emulator_config
from testkit.fake_discord import FakeChannel, FakeConfig, FakeDiscord, FakeGuild, FakeInteraction, FakeUser
from testkit.harness import BotProcess, ChildProcess
from testkit.images import picture

PNG = picture(320, 180)
TOKEN = "bench-bot-token"


# --- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between the two nearest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def jain(counts: Sequence[float]) -> float:
    """Jain's fairness index: 1.0 when everyone got the same, 1/n when one got everything."""
    squares = sum(c * c for c in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if squares else math.nan


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


# --- the minimal bot (the bound of the acknowledgement benchmark) --------------------------------


class MinimalBotProcess(ChildProcess):
    """``python -m bench.minimal_bot``: a discord.py bot whose /animate only defers.

    Started like BotProcess (same environment names), so it logs in to the same fake the same way.
    """

    stop_timeout = 10.0

    def __init__(self, tmp: Path, fake: FakeDiscord, *, sync_guild: int | None = None) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DOITONG_", "DISCORD_"))}
        self.env.update(
            PYTHONPATH=str(ROOT),
            DISCORD_TOKEN=fake.config.token,
            DISCORD_API_BASE=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
        )
        if sync_guild is not None:
            self.env["BENCH_SYNC_GUILD"] = str(sync_guild)
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = tmp / "minimal-bot.log"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.minimal_bot", env=self.env, cwd=self.tmp, stdout=log, stderr=log
            )


class ProfiledBotProcess(BotProcess):
    """The real bot under cProfile (``BENCH_PROFILE_DIR`` set): a .prof file per start, written
    when the bot exits on SIGTERM. For finding where a missed target's time goes."""

    async def start(self) -> None:
        self.starts += 1
        out = Path(os.environ["BENCH_PROFILE_DIR"]) / f"bot-{os.getpid()}-{id(self)}-{self.starts}.prof"
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cProfile", "-o", str(out), "-m", "bot",
                env=self.env, cwd=self.tmp, stdout=log, stderr=log,
            )  # fmt: skip


# --- a world -------------------------------------------------------------------------------------


@dataclass
class World:
    fake: FakeDiscord
    emu: Emulator
    bot: BotProcess | MinimalBotProcess
    guild: FakeGuild
    channel: FakeChannel
    members: list[FakeUser]
    tmp: Path
    interactions: list[FakeInteraction] = field(default_factory=list)

    @property
    def bot_pid(self) -> int:
        assert self.bot.proc is not None
        return self.bot.proc.pid

    @property
    def real(self) -> BotProcess:
        assert isinstance(self.bot, BotProcess)
        return self.bot

    async def animate(self, user: FakeUser, **options: Any) -> FakeInteraction:
        """One /animate by ``user`` with the test picture; returns once the frame was written."""
        opts = {"prompt": "the harbour at dusk", "version": "gen-2"} | options
        it = await self.fake.invoke_slash(
            "animate", user=user, guild=self.guild, channel=self.channel, options=opts,
            attachments={"image": (PNG, "harbour.png", "image/png")},
        )  # fmt: skip
        self.interactions.append(it)
        return it

    def account(self, label: str = "pro") -> dict[str, Any]:
        stats: dict[str, Any] = self.emu.stats()["accounts"][label]
        return stats

    def fake_to_wall(self) -> float:
        """Add this to a time on the fake's clock (``fake.now()``, monotonic) to get Unix time."""
        return time.time() - self.fake.now()


@contextlib.contextmanager
def rig_gc_paused() -> Iterator[None]:
    """No garbage collection in this process while a world is open.

    This process is the test rig: the Discord fake and the API emulator, standing in for
    services whose pauses are not the bot's. Its cyclic garbage collector, with the objects a
    long run accumulates, paused it for 50-340 ms every few seconds (measured with gc.callbacks),
    stalling webhooks, creates and message reads, and those stalls showed up in the bot's figures.
    Collected once before and once after instead; the bot processes collect as usual.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()


async def wait_for_log(bot: BotProcess | MinimalBotProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in bot.log():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bot never logged {text!r}:\n{bot.log()[-3000:]}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def world(
    tmp: Path,
    *,
    members: int,
    minimal: bool = False,
    sync: bool = True,
    time_scale: float = 0.05,
    emu: dict[str, Any] | None = None,
    webhooks: bool = True,
    extra: dict[str, str] | None = None,
) -> AsyncIterator[World]:
    """The emulator, the fake, a server with ``members`` members, and a bot logged in to them.

    ``sync``: publish the slash commands to the server first (as an operator does with
    ``python -m bot sync --guild``; the minimal bot syncs its one command itself), so the fake
    types and checks each /animate against the published command.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = emulator_config(time_scale=time_scale, **(emu or {}))
    with rig_gc_paused():
        async with Emulator(cfg) as emulator, FakeDiscord(FakeConfig(token=TOKEN)) as fake:
            guild = fake.add_guild("Harbour")
            channel = fake.add_text_channel(guild, "general")
            users = [fake.add_user(f"member{i:03d}") for i in range(members)]
            for user in users:
                fake.add_member(guild, user)
            bot: BotProcess | MinimalBotProcess
            if minimal:
                bot = MinimalBotProcess(tmp, fake, sync_guild=guild.id if sync else None)
            else:
                env = {"POOL_WELCOME_CREDITS": "10000000", "DEFAULT_USER_PLAN": "pro"} | (extra or {})
                kind = ProfiledBotProcess if os.environ.get("BENCH_PROFILE_DIR") else BotProcess
                window = 60 * time_scale
                bot = kind(tmp, fake, emulator.base_url, webhooks=webhooks, rate_window=window, extra=env)
            w = World(fake, emulator, bot, guild, channel, users, tmp)
            try:
                if sync and isinstance(bot, BotProcess):
                    code, out = await bot.run_command("sync", "--guild", str(guild.id))
                    if code != 0:
                        raise RuntimeError(f"python -m bot sync failed ({code}): {out}")
                await bot.start()
                await fake.wait_for_ready(timeout=60)
                await wait_for_log(bot, "logged in as", timeout=60)  # discord.py's on_ready: the
                # real bot starts its pipeline then (about 2 s after the fake's READY + GUILD_CREATE)
                if sync and minimal:  # it publishes its command itself, once logged in
                    await fake.wait_until(lambda: bool(fake.commands(guild=guild)), 30, "its sync")
                yield w
            except BaseException:
                sys.stderr.write(bot.log()[-4000:])
                raise
            finally:
                await bot.stop()
