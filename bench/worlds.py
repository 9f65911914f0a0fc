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
from bot.store import Store
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


# --- measuring the processes ---------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (clock ticks: 10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def lag_monitor(samples: list[float], period: float = 0.002) -> AsyncIterator[None]:
    """Record how late a ``sleep(period)`` wakes on this loop (the fake's loop): its busy time."""
    loop = asyncio.get_running_loop()

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            samples.append(max(0.0, loop.time() - before - period))

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
                sys.executable, "-m", "cProfile", "-o", str(out), "-m", "bot", *self.run_args,
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


def real_bot(
    tmp: Path,
    fake: FakeDiscord,
    emulator: Emulator,
    *,
    webhooks: bool = True,
    extra: dict[str, str] | None = None,
    run_args: Sequence[str] = (),
) -> BotProcess:
    """The real bot as the benchmarks run it: every member on Pro, a pool that never runs short,
    the request budget's window on the emulator's clock; under cProfile when BENCH_PROFILE_DIR is
    set."""
    env = {"POOL_WELCOME_CREDITS": "10000000", "DEFAULT_USER_PLAN": "pro"} | (extra or {})
    kind = ProfiledBotProcess if os.environ.get("BENCH_PROFILE_DIR") else BotProcess
    window = 60 * emulator.config.time_scale
    return kind(
        tmp, fake, emulator.base_url, webhooks=webhooks, rate_window=window, run_args=run_args, extra=env
    )


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
                bot = real_bot(tmp, fake, emulator, webhooks=webhooks, extra=extra)
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


# --- a sharded world: several bot processes on one PostgreSQL database -----------------------------


@dataclass
class ShardedWorld:
    """The emulator, a fake with ``len(guilds)`` shards (server k on shard k), and bot processes
    that share one PostgreSQL database, each serving some of the shards."""

    fake: FakeDiscord
    emu: Emulator
    bots: list[BotProcess]
    guilds: list[FakeGuild]  # guilds[k] is on shard k
    channels: list[FakeChannel]
    members: list[FakeUser]  # each a member of every server
    tmp: Path
    interactions: list[FakeInteraction] = field(default_factory=list)

    @property
    def bot_pids(self) -> list[int]:
        pids = []
        for bot in self.bots:
            assert bot.proc is not None
            pids.append(bot.proc.pid)
        return pids

    async def animate(self, user: FakeUser, shard: int) -> FakeInteraction:
        """One /animate by ``user`` in the server on ``shard``; returns once the frame was written."""
        it = await self.fake.invoke_slash(
            "animate", user=user, guild=self.guilds[shard], channel=self.channels[shard],
            options={"prompt": "the harbour at dusk", "version": "gen-2"},
            attachments={"image": (PNG, "harbour.png", "image/png")},
        )  # fmt: skip
        self.interactions.append(it)
        return it


@contextlib.asynccontextmanager
async def sharded_world(
    tmp: Path,
    database_url: str,
    *,
    processes: Sequence[Sequence[int]],
    members: int,
    time_scale: float = 0.05,
    emu: dict[str, Any] | None = None,
) -> AsyncIterator[ShardedWorld]:
    """A server on each shard of ``range(shards)`` (every id in ``processes``), ``members`` members
    in all of them, and one real bot per entry of ``processes`` (``python -m bot run --shard-ids
    ... --shard-count N``, webhooks on, ``DATABASE_URL`` = ``database_url``), all logged in.

    The database is migrated before any bot starts; the slash commands are published globally
    (``python -m bot sync``) first. Identify concurrency is the shard count: no identify waits.
    """
    shards = sorted({k for ids in processes for k in ids})
    count = len(shards)
    assert shards == list(range(count)), f"the processes must cover shards 0..n-1, not {shards}"
    tmp.mkdir(parents=True, exist_ok=True)
    store = await Store.open(database_url)  # migrate once, not by racing bot starts
    await store.close()
    cfg = emulator_config(time_scale=time_scale, **(emu or {}))
    fake_cfg = FakeConfig(token=TOKEN, shard_count=count, max_concurrency=count)
    with rig_gc_paused():
        async with Emulator(cfg) as emulator, FakeDiscord(fake_cfg) as fake:
            guilds = [fake.add_guild(f"Harbour {k}", shard=k) for k in shards]
            channels = [fake.add_text_channel(g, "general") for g in guilds]
            users = [fake.add_user(f"member{i:03d}") for i in range(members)]
            for guild in guilds:
                for user in users:
                    fake.add_member(guild, user)
            bots = []
            for n, ids in enumerate(processes):
                run = ["run", "--shard-ids", ",".join(map(str, ids)), "--shard-count", str(count)]
                (tmp / f"p{n}").mkdir(parents=True, exist_ok=True)
                bots.append(
                    real_bot(
                        tmp / f"p{n}", fake, emulator, extra={"DATABASE_URL": database_url}, run_args=run
                    )
                )
            w = ShardedWorld(fake, emulator, bots, guilds, channels, users, tmp)
            try:
                code, out = await bots[0].run_command("sync")
                if code != 0:
                    raise RuntimeError(f"python -m bot sync failed ({code}): {out}")
                for bot in bots:
                    await bot.start()
                await fake.wait_for_all_shards_ready(timeout=90)
                for bot in bots:
                    await wait_for_log(bot, "logged in as", timeout=60)
                yield w
            except BaseException:
                for n, bot in enumerate(bots):
                    sys.stderr.write(f"----- bot process {n} -----\n{bot.log()[-4000:]}")
                raise
            finally:
                for bot in bots:
                    await bot.stop()
