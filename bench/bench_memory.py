"""Benchmark 5, memory: the bot process's RSS while it follows 10,000 in-flight jobs.

The real bot (``python -m bot`` in a subprocess, as testkit.harness.BotProcess starts it) logs
in to the Discord fake and talks to the API emulator, both on loopback in this process, with
webhooks on. Before it starts, its database gets N jobs in ``processing`` (a server's jobs, each
with its pool reservation), and the emulator's own table gets the same N jobs as processing
forever (registered directly; they never finish), so the bot's poller reads real answers for
them. The bot is measured once it has read every one of them at least once and its RSS has held
still; the bound is the same bot, started the same way, with no jobs at all.

Left out, and said so in the report: status cards (the jobs have none, so the progress loop does
not send 10,000 Discord edits every 15 s; those would be Discord traffic, not memory).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import INSERT_JOB, Result, mb, proc_status_bytes
from bot.jobs import JobOptions, JobState
from bot.store import Store
from emulator.jobs import CreateRequest, now_utc
from emulator.jobs import Job as EmulatorJob
from emulator.server import Emulator
from shared import contract
from testkit.accounts import emulator_config
from testkit.fake_discord import FakeConfig, FakeDiscord
from testkit.harness import BotProcess

TITLE = "5. Memory"
ORDER = 5

OPTIONS = JobOptions(prompt="the harbour at dusk", duration=5, version="gen-3")
TARGET_BYTES = 200e6
TIME_SCALE = 0.05  # the emulator's 60 s rate window becomes 3 s: a poll round takes seconds
RATE_WINDOW = 60 * TIME_SCALE


def api_id(i: int) -> str:
    return f"memjob{i:010d}"


def seed(db: Path, n: int, guild_id: int, channel_id: int, members: list[int]) -> None:
    """``n`` processing jobs with their reservations, straight into the bot's (migrated) file."""
    now = time.time()
    cost = OPTIONS.estimated_credits
    rows = [
        (
            f"0{i:07x}", f"mem-{i}", api_id(i), "processing", "discord", members[i % len(members)],
            guild_id, channel_id, 3_000_000 + i, f"token-{i}", now + 900, f"https://cdn.example/{i}.png",
            OPTIONS.prompt, OPTIONS.duration, OPTIONS.aspect_ratio, OPTIONS.motion, OPTIONS.version,
            cost, cost, None, None, now, now, now, None, None, None, None, 10 * 1024 * 1024, None, None,
        )
        for i in range(n)
    ]  # fmt: skip
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO guilds (guild_id, balance, created_at) VALUES (?, 0, ?)", (guild_id, now))
        conn.executemany(INSERT_JOB, rows)
        ledger: list[tuple[Any, ...]] = [(guild_id, None, None, "grant", cost * n, "bench", now)]
        ledger += [(guild_id, r[0], r[5], "reserve", -cost, None, now) for r in rows]
        conn.executemany(
            "INSERT INTO ledger (guild_id, job_id, user_id, kind, amount, note, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            ledger,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def register_at_emulator(emu: Emulator, n: int, webhook_url: str) -> None:
    """The same jobs on the API's side: processing, and never finishing (no task runs them)."""
    request = CreateRequest(
        image_ref="https://cdn.example/x.png", prompt=OPTIONS.prompt, duration=OPTIONS.duration,
        aspect_ratio=OPTIONS.aspect_ratio, motion=OPTIONS.motion, version=OPTIONS.version,
        webhook_url=webhook_url,
    )  # fmt: skip
    created = now_utc()
    for i in range(n):
        emu.service.jobs[api_id(i)] = EmulatorJob(
            id=api_id(i), owner="pro", request=request, cost=request.cost, created_at=created,
            status=contract.STATUS_PROCESSING,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Sample:
    rss: int
    hwm: int
    seconds: float  # from ready to settled
    reads: int  # status reads the emulator answered for this bot
    still_processing: int
    log_errors: int


async def measure_bot(
    world: dict[str, Any], tmp: Path, n: int, session: int, *, min_wait: float, max_wait: float
) -> Sample:
    fake: FakeDiscord = world["fake"]
    emu: Emulator = world["emu"]
    tmp.mkdir()
    bot = BotProcess(
        tmp, fake, emu.base_url, rate_window=RATE_WINDOW, extra={"JOB_TIMEOUT": "86400", "LOG_LEVEL": "INFO"}
    )
    store = await Store.open(bot.db)  # migrate the file first, as the bot would
    await store.close()
    seed(bot.db, n, world["guild"].id, world["channel"].id, world["members"])
    register_at_emulator(emu, n, bot.webhook_url)
    reads_before = int(emu.stats()["accounts"]["pro"]["status_reads"])
    await bot.start()
    try:
        await fake.wait_for_ready(timeout=60, count=session)
        assert bot.proc is not None
        pid = bot.proc.pid
        ready = time.monotonic()
        history: list[int] = []
        while True:
            await asyncio.sleep(0.5)
            history.append(proc_status_bytes(pid, "VmRSS"))
            waited = time.monotonic() - ready
            reads = int(emu.stats()["accounts"]["pro"]["status_reads"]) - reads_before
            recent = history[-5:]
            steady = len(recent) == 5 and max(recent) - min(recent) <= 0.01 * max(recent)
            if (waited >= min_wait and reads >= n and steady) or waited >= max_wait:
                break
        sample_rss, sample_hwm = history[-1], proc_status_bytes(pid, "VmHWM")
    finally:
        await bot.stop()
    jobs = await bot.jobs()
    log = bot.log()
    errors = sum(1 for line in log.splitlines() if " ERROR " in line or line.startswith("Traceback"))
    return Sample(
        rss=sample_rss,
        hwm=sample_hwm,
        seconds=waited,
        reads=reads,
        still_processing=sum(1 for j in jobs if j.state is JobState.PROCESSING),
        log_errors=errors,
    )


async def _measure(smoke: bool, result: Result) -> None:
    n = 500 if smoke else 10_000
    min_wait = 3.0 if smoke else 12.0  # at least two of the progress loop's 5 s rounds
    max_wait = 30.0 if smoke else 180.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    async with (
        Emulator(emulator_config(time_scale=TIME_SCALE)) as emu,
        FakeDiscord(FakeConfig(token="bench-token")) as fake,
    ):
        guild = fake.add_guild("Harbour")
        channel = fake.add_text_channel(guild, "general")
        members = []
        for name in ("alice", "bob", "carol", "dave"):
            user = fake.add_user(name)
            fake.add_member(guild, user)
            members.append(user.id)
        world = {"fake": fake, "emu": emu, "guild": guild, "channel": channel, "members": members}
        empty = await measure_bot(world, tmp / "empty", 0, 1, min_wait=min_wait, max_wait=max_wait)
        full = await measure_bot(world, tmp / "full", n, 2, min_wait=min_wait, max_wait=max_wait)

    growth = (full.rss - empty.rss) / n
    result.figure(f"bot RSS with {n:,} jobs in flight", mb(full.rss), f"{mb(empty.rss)} with none")
    result.figure(f"bot peak RSS (VmHWM) with {n:,} jobs", mb(full.hwm), f"{mb(empty.hwm)} with none")
    result.figure("growth per in-flight job", f"{growth / 1e3:,.1f} kB", "")
    result.figure(
        "status reads of those jobs before the sample",
        f"{full.reads:,} (every job read at least once: {'yes' if full.reads >= n else 'NO'})",
    )
    result.figure("jobs still processing after the bot stopped", f"{full.still_processing:,} of {n:,}")
    result.figure("ERROR lines or tracebacks in the bot's log", f"{full.log_errors + empty.log_errors}")
    result.figure("sampled after ready", f"{full.seconds:.0f} s", f"{empty.seconds:.0f} s with none")
    result.target(f"< {mb(TARGET_BYTES)} with {n:,} jobs", mb(full.rss), full.rss < TARGET_BYTES)
    result.note(
        "RSS is /proc/<pid>/status VmRSS of the bot process, sampled every 0.5 s after READY; the "
        "figure is taken once the emulator has answered a status read for every job and the last "
        f"five samples agree within 1% (after at least {min_wait:.0f} s, at most {max_wait:.0f} s)."
    )
    result.note(
        f"Pro plan, webhooks on, rate window {RATE_WINDOW:g} s against an emulator time-scaled by "
        f"{TIME_SCALE:g}, so the poller's safety-net reads (25 jobs per request) cycle within seconds."
    )
    result.note(
        "The jobs have no status card, so the progress loop finds nothing to edit (a real bot with "
        "10,000 cards would also send their edits to Discord)."
    )
    result.note(f"Bot databases and logs under {tmp}.")


def run(smoke: bool) -> Result:
    result = Result("memory", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
