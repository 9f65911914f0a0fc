"""The unmodified bot process behind the relay: the API emulator posts its webhooks to the relay,
the bot connects out to it, and the Discord fake sees what members see. All over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.jobs import JobState
from bot.media.video import probe
from emulator.server import Emulator
from relay.server import RelayServer
from testkit.accounts import emulator_config
from testkit.fake_discord import FakeConfig, FakeDiscord
from testkit.harness import BotProcess, free_port
from testkit.images import picture
from testkit.relay import ALPHA_TOKEN, eventually, job_event, post, relay_config, sign

pytestmark = pytest.mark.timeout(120)
PNG = picture(320, 180)
TIME_SCALE = 0.02
# The bot budgets a 6 s window against the emulator's 1.2 s one: a slower pace than it may use, and
# the safety-net poller's first read of a job 6 s after it starts, so "no status poll" holds on a
# loaded machine too (jobs take ~0.35 s).
BOT_WINDOW = 6.0


@dataclass
class World:
    fake: FakeDiscord
    emu: Emulator
    relay: RelayServer
    bot: BotProcess
    guild: Any
    channel: Any
    alice: Any

    async def animate(self, **options: Any) -> Any:
        it = await self.fake.invoke_slash(
            "animate", user=self.alice, guild=self.guild, channel=self.channel,
            options={"prompt": "the sea moves", "version": "gen-2"} | options,
            attachments={"image": (PNG, "pic.png", "image/png")},
        )  # fmt: skip
        await it.wait_acknowledged(timeout=3)
        return it

    def api_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.emu.stats()["accounts"]["pro"]
        return stats

    def messages_with(self, text: str) -> list[Any]:
        return [e for e in self.fake.events if e.kind == "create" and text in (e.content or "")]

    async def held(self) -> int:
        async with httpx.AsyncClient() as http:
            count: int = (await http.get(self.relay.base_url + "/healthz")).json()["held"]
            return count


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, *, emu: dict[str, Any] | None = None, relay_up: bool = True, receiver: bool = False
) -> AsyncIterator[World]:
    """The bot subscribes to channel ``alpha`` of a relay; the API's webhookUrl is that channel."""
    port = free_port()
    relay_url = f"http://127.0.0.1:{port}"
    relay = RelayServer(relay_config(tmp_path, port=port, heartbeat_seconds=1.0))
    emu_cfg = emulator_config(time_scale=TIME_SCALE, **(emu or {}))
    async with (
        Emulator(emu_cfg) as emulator,
        FakeDiscord(FakeConfig(token="relay-e2e-token")) as discord,
    ):
        if relay_up:
            await relay.start()
        guild = discord.add_guild("Harbour")
        channel = discord.add_text_channel(guild, "general")
        alice = discord.add_user("alice")
        discord.add_member(guild, alice)
        extra = {
            "RELAY_URL": relay_url,
            "RELAY_TOKEN": ALPHA_TOKEN,
            "PUBLIC_WEBHOOK_URL": f"{relay_url}/webhooks/doitong/alpha",
        }
        if not receiver:
            extra["WEBHOOK_PORT"] = "off"
        bot = BotProcess(
            tmp_path, discord, emulator.base_url, webhooks=False, rate_window=BOT_WINDOW, extra=extra
        )
        await bot.start()
        try:
            await discord.wait_for_ready(timeout=30)
            yield World(discord, emulator, relay, bot, guild, channel, alice)
        except BaseException:
            print(bot.log()[-6000:])
            raise
        finally:
            await bot.stop()
            await relay.stop()


def listening_tcp_ports(pid: int) -> list[int]:
    """The TCP ports this process listens on, from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.append(int(local.rsplit(":", 1)[1], 16))
    return ports


def video_of(event: Any) -> bytes:
    (attachment,) = event.attachments
    data: bytes = attachment.data
    return data


async def test_a_bot_with_no_listening_port_gets_its_video_through_the_relay(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        assert w.bot.proc is not None
        assert listening_tcp_ports(w.bot.proc.pid) == []  # nothing to reach from outside
        await eventually(lambda: w.relay.subscribed("alpha"), what="the bot's subscription")
        it = await w.animate()
        done = await w.fake.wait_for(
            lambda e: e.kind == "create" and f"<@{w.alice.id}>" in (e.content or ""), timeout=60
        )
        assert probe(video_of(done)).frames > 0
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.DELIVERED)
        assert job.outcome == "completed"
        stats = w.api_stats()
        assert stats["jobs_created"] == 1
        assert stats["status_reads"] == 0  # the relay brought the end; the poller never asked
        assert w.emu.stats()["webhooks"]["delivered"] == 1  # the API's post went to the relay
        await eventually(lambda: w.relay.store is not None and w.relay.store.holding("alpha") == 0)
        assert it.user.id == w.alice.id
        assert len(w.messages_with(f"<@{w.alice.id}>")) == 1


async def test_the_bot_killed_while_events_arrive_gets_each_once_and_in_order(tmp_path: Path) -> None:
    # Jobs that stay running (~100 s): the ends come from the test, posted as the API does.
    async with world(tmp_path, emu={"processing_seconds": 5000}) as w:
        for _ in range(6):
            await w.animate()
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 6 and all(j.state is JobState.PROCESSING and j.api_job_id for j in js)
        )
        jobs.sort(key=lambda j: j.created_at)
        bodies = [
            job_event(j.api_job_id or "", "failed", error=f"stopped number {i}") for i, j in enumerate(jobs)
        ]
        async with httpx.AsyncClient() as http:
            for body in bodies[:3]:
                assert (await post(http, w.relay.base_url, body)).status_code == 200
            await w.bot.wait_jobs(lambda js: any(j.state is not JobState.PROCESSING for j in js))
            await w.bot.kill()  # mid-stream: some handled, some not, acknowledgements in flight
            for body in bodies[3:]:  # the API goes on posting while the bot is down
                assert (await post(http, w.relay.base_url, body)).status_code == 200
        await w.bot.start()
        await w.fake.wait_for_ready(timeout=30, count=2)
        ended = await w.bot.wait_jobs(lambda js: all(j.state is JobState.DELIVERED for j in js), timeout=60)
        for i in range(6):
            assert len(w.messages_with(f"stopped number {i}")) == 1, i  # once each
        by_id = {j.id: j for j in ended}
        finished = [by_id[j.id].completed_at or 0 for j in jobs]
        assert finished == sorted(finished)  # applied in the order the API sent them
        assert all(by_id[j.id].outcome == "failed" for j in jobs)
        await eventually(lambda: w.relay.store is not None and w.relay.store.holding("alpha") == 0)


async def test_a_forged_webhook_through_the_relay_is_rejected_by_the_bot(tmp_path: Path) -> None:
    async with world(tmp_path, emu={"processing_seconds": 5000}) as w:  # the API's own end: ~100 s
        it = await w.animate()
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        forged = job_event(job.api_job_id or "", url="http://evil.example/x.mp4")
        real = job_event(job.api_job_id or "", "failed", error="model overloaded")
        async with httpx.AsyncClient() as http:
            # The relay holds no secret for this channel: it keeps the forgery, the bot must refuse it.
            answer = await post(http, w.relay.base_url, forged, signature=sign(forged, "a guess"))
            assert answer.status_code == 200
            assert (await post(http, w.relay.base_url, forged, signature=None)).status_code == 401
            await eventually(lambda: w.relay.store is not None and w.relay.store.holding("alpha") == 0)
            (still,) = await w.bot.jobs()
            assert still.state is JobState.PROCESSING and still.result_url is None
            assert "relay event 1 dropped: missing or wrong signature" in w.bot.log()
            # The genuine end, signed, sent twice: applied once.
            for _ in range(2):
                assert (await post(http, w.relay.base_url, real)).status_code == 200
        notice = await w.fake.wait_for(
            lambda e: e.kind == "create" and "model overloaded" in (e.content or ""), timeout=30
        )
        assert f"<@{it.user.id}>" in notice.content
        (ended,) = await w.bot.wait_jobs(lambda js: js[0].state is JobState.DELIVERED)
        assert ended.outcome == "failed" and ended.result_url is None
        await asyncio.sleep(0.5)
        assert len(w.messages_with("model overloaded")) == 1
        assert not [e for e in w.fake.events if "evil.example" in json.dumps(e.content)]


async def test_while_the_relay_is_unreachable_the_poller_delivers_then_the_relay_takes_over(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, relay_up=False, receiver=True) as w:
        assert w.bot.proc is not None
        # The control for the check above: a bot with its receiver listens on exactly that port.
        assert listening_tcp_ports(w.bot.proc.pid) == [w.bot.webhook_port]
        first = await w.animate()
        await w.fake.wait_for(
            lambda e: e.kind == "create" and f"<@{first.user.id}>" in (e.content or ""), timeout=60
        )
        reads = w.api_stats()["status_reads"]
        assert reads >= 1  # no webhook could arrive: the poller found the end
        await w.relay.start()
        await eventually(lambda: w.relay.subscribed("alpha"), timeout=60, what="the bot's subscription")
        await w.animate()
        await w.bot.wait_jobs(lambda js: len(js) == 2 and all(j.state is JobState.DELIVERED for j in js))
        assert w.api_stats()["status_reads"] == reads  # this one came through the relay
        assert len(w.messages_with(f"<@{w.alice.id}>")) == 2
