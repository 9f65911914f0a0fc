"""Two real bot processes on one PostgreSQL database, each serving two of four shards of the
Discord fake, against the time-scaled API emulator, over loopback: the set-up of the scale-out
end-to-end tests (tests/e2e/test_scale_out.py, test_pg_restart.py) and what they read.

Process A runs ``run --shard-ids 0,1 --shard-count 4``, process B ``--shard-ids 2,3``; the fake
has four shards with max_concurrency 4 (no identify waits), and one server on each shard. The
books are read from the shared database; who leads is read from each process's ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.jobs import Job, JobState
from bot.store import Store
from emulator.server import Emulator
from testkit.accounts import emulator_config
from testkit.books import ledger_sum
from testkit.e2e_world import PNG
from testkit.fake_discord import FakeConfig, FakeDiscord
from testkit.harness import BotProcess

SHARDS = 4
WELCOME = 100_000
COST = 10  # gen-2 at 5 s


@dataclass
class Cluster:
    fake: FakeDiscord
    emu: Emulator
    url: str
    procs: list[BotProcess]  # procs[0] serves shards 0,1; procs[1] shards 2,3
    guilds: list[Any]  # guilds[k] is on shard k
    channels: list[Any]
    samples: list[tuple[float, bool, bool]] = field(default_factory=list)  # (time, A leads, B leads)
    peak_active: int = 0

    async def animate(self, user: Any, shard: int) -> Any:
        return await self.fake.invoke_slash(
            "animate", user=user, guild=self.guilds[shard], channel=self.channels[shard],
            options={"prompt": "the sea moves", "version": "gen-2"},
            attachments={"image": (PNG, "pic.png", "image/png")},
        )  # fmt: skip

    def members(self, n: int) -> list[Any]:
        users = [self.fake.add_user(f"member{i:02d}") for i in range(n)]
        for u in users:
            for g in self.guilds:
                self.fake.add_member(g, u)
        return users

    def api_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.emu.stats()["accounts"]["pro"]
        return stats

    async def jobs(self) -> list[Job]:
        store = await Store.open(self.url)
        try:
            return await store.jobs_in_states(JobState)
        finally:
            await store.close()

    async def wait_jobs(self, n: int, state: JobState, timeout: float) -> list[Job]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = await self.jobs()
            if len(jobs) == n and all(j.state is state for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs never all {state}: {Counter(j.state for j in jobs)}")
            await asyncio.sleep(0.2)

    async def books(self) -> list[tuple[int, int]]:
        """(balance, ledger sum) of each server's pool."""
        store = await Store.open(self.url)
        try:
            out = []
            for g in self.guilds:
                guild = await store.get_guild(g.id)
                if guild is not None:
                    out.append((guild.balance, await ledger_sum(store, g.id)))
            return out
        finally:
            await store.close()

    def deliveries(self, users: list[Any]) -> Counter[int]:
        """Result messages (with a file) per member."""
        per: Counter[int] = Counter()
        for e in self.fake.events:
            if e.kind != "create" or not e.attachments:
                continue
            for u in users:
                if f"<@{u.id}>" in (e.content or ""):
                    per[u.id] += 1
        return per

    def leaders_seen_together(self) -> int:
        return sum(1 for _, a, b in self.samples if a and b)


async def health(http: httpx.AsyncClient, proc: BotProcess) -> dict[str, Any] | None:
    if proc.proc is None or proc.proc.returncode is not None:
        return None
    try:
        answer: dict[str, Any] = (await http.get(proc.health_url, timeout=1.0)).json()
        return answer
    except (httpx.HTTPError, ValueError):
        return None


async def leads(http: httpx.AsyncClient, proc: BotProcess) -> bool:
    h = await health(http, proc)
    return bool(h and h.get("leader") is True)


async def logged(process: BotProcess, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"never logged {text!r}\n{process.log()[-3000:]}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, url: str, *, emu: dict[str, Any] | None = None, extra: dict[str, str] | None = None
) -> AsyncIterator[Cluster]:
    emu_cfg = emulator_config(time_scale=0.02, **(emu or {}))
    async with (
        Emulator(emu_cfg) as emulator,
        FakeDiscord(FakeConfig(token="e2e-token", shard_count=SHARDS, max_concurrency=SHARDS)) as discord,
    ):
        guilds, channels = [], []
        for k in range(SHARDS):
            guild = discord.add_guild(f"Shard {k}", shard=k)
            channels.append(discord.add_text_channel(guild, "general"))
            guilds.append(guild)
        env = {"DATABASE_URL": url, "POOL_WELCOME_CREDITS": str(WELCOME)} | (extra or {})
        procs = []
        for name, ids in (("a", "0,1"), ("b", "2,3")):
            (tmp_path / name).mkdir()
            run = ["run", "--shard-ids", ids, "--shard-count", str(SHARDS)]
            window = 60 * emu_cfg.time_scale
            procs.append(
                BotProcess(
                    tmp_path / name, discord, emulator.base_url, rate_window=window, run_args=run, extra=env
                )
            )
        c = Cluster(discord, emulator, url, procs, guilds, channels)

        async def watch() -> None:
            async with httpx.AsyncClient() as http:
                while True:
                    a, b = await asyncio.gather(leads(http, procs[0]), leads(http, procs[1]))
                    c.samples.append((time.monotonic(), a, b))
                    c.peak_active = max(c.peak_active, c.api_stats()["active_jobs"])
                    await asyncio.sleep(0.05)

        watcher: asyncio.Task[None] | None = None
        try:
            for p in procs:
                await p.start()
            await discord.wait_for_all_shards_ready(timeout=90)
            for p in procs:
                await logged(p, "logged in as")
            watcher = asyncio.create_task(watch())
            yield c
        except BaseException:
            for name, p in zip("AB", procs, strict=True):
                print(f"----- process {name} -----\n{p.log()[-5000:]}")
            raise
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            for p in procs:
                if p.proc is not None and p.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.proc.pid, signal.SIGCONT)
                await p.stop()


async def wait_leader(c: Cluster, proc: BotProcess, timeout: float = 30) -> float:
    """Seconds until ``proc`` says it leads."""
    start = time.monotonic()
    async with httpx.AsyncClient() as http:
        while not await leads(http, proc):
            if time.monotonic() - start > timeout:
                raise AssertionError(f"never led within {timeout} s\n{proc.log()[-3000:]}")
            await asyncio.sleep(0.05)
    return time.monotonic() - start


async def the_leader(c: Cluster) -> int:
    """The index of the one process that leads (waits for there to be one)."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            a, b = await asyncio.gather(leads(http, c.procs[0]), leads(http, c.procs[1]))
            assert not (a and b), "both processes lead"
            if a or b:
                return 0 if a else 1
            if time.monotonic() > deadline:
                raise AssertionError("no leader")
            await asyncio.sleep(0.1)


async def fire(c: Cluster, users: list[Any], per_member: int) -> list[Any]:
    """``per_member`` /animate from each member, spread round-robin over the four servers."""
    its = []
    for i in range(per_member):
        for j, u in enumerate(users):
            its.append(await c.animate(u, (i * len(users) + j) % SHARDS))
    for it in its:
        assert (await it.wait_acknowledged(timeout=10)).type == 5
    return its


async def all_admitted_and_one_running(c: Cluster, n: int, timeout: float = 60) -> list[Job]:
    """The jobs once all ``n`` are recorded and at least one is at the API (mid-run)."""
    deadline = time.monotonic() + timeout
    while len(jobs := await c.jobs()) < n or not any(j.state is JobState.PROCESSING for j in jobs):
        assert time.monotonic() < deadline, Counter(j.state for j in jobs)
        await asyncio.sleep(0.1)
    return jobs


async def check_books(c: Cluster, users: list[Any], n: int, per_member: int) -> list[Job]:
    jobs = await c.wait_jobs(n, JobState.DELIVERED, timeout=180)
    assert all(j.outcome == "completed" for j in jobs)
    await asyncio.sleep(1.0)  # let any duplicate show itself
    per = c.deliveries(users)
    assert sum(per.values()) == n and set(per.values()) == {per_member}, per  # each exactly once
    books = await c.books()
    assert books and all(balance == ledger for balance, ledger in books), books
    billed = sum(j["creditCost"] or 0 for j in c.emu.stats()["jobs"] if j["label"] == "pro")
    assert billed == n * COST == sum(j.actual_credits or 0 for j in jobs)
    assert sum(WELCOME - balance for balance, _ in books) == billed
    return jobs
