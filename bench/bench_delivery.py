"""Benchmark 6, delivery overhead: the API finishing a job -> Discord receiving the final message.

The real bot (``python -m bot``, webhooks on) against the time-scaled API emulator and the
Discord fake, both in this process. Ten members send N /animate between them (gen-2, 5 s) at
once; the Pro account runs ten at a time, so completions arrive about ten per job time, as they
would on a busy server. For each job:

- completed: the emulator's own completion time (``completedAt``: ``datetime.now(UTC)`` when it
  marks the job completed, just before it posts the webhook): wall clock.
- received: the fake's record of the message that delivers the video (the follow-up naming the
  job, with its MP4 attached): ``MessageEvent.time`` on the fake's clock (the event loop's
  monotonic clock, seconds since the fake started), turned into wall time with an offset taken
  from ``time.time() - fake.now()`` (taken at the start and at the end; the drift between the two
  is printed).
- upload: approximated by the fake's own record of that request: from the moment its handler
  started (``RequestRecord.time``: the request line and headers have arrived) to the message event
  (the multipart body read, checked and stored). What is left out of "upload" is the time before
  the request's headers reach the fake (opening or reusing a connection), which on loopback is
  well under a millisecond.

Overhead = received - completed - upload: the webhook's trip to the bot, verification, the
completion transaction, the delivery queue, downloading the MP4 from the API, probing it, and
building the request. p50, p95 and the worst.

Bound (same run, same emulator and fake, after the bot's jobs): a bare deliverer in this process,
an aiohttp webhook handler that does only what cannot be skipped: read the webhook, GET the MP4,
POST it to the channel with the bot's token. Same number of jobs, ten at a time. Its overhead is
measured the same way: the floor of this path on this machine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import Result, say
from bench.worlds import PNG, TOKEN, World, ms, percentile, world
from bot.api.client import CreateRequest, DoitongClient
from testkit.accounts import PRO_KEY
from testkit.fake_discord import MessageEvent, RequestRecord

TITLE = "6. Delivery overhead"
ORDER = 6

TIME_SCALE = 0.05
MEMBERS = 10
TARGET_P95 = 0.250


@dataclass
class Sample:
    job: str
    completed: float  # wall
    received: float  # wall
    upload: float

    @property
    def total(self) -> float:
        return self.received - self.completed

    @property
    def overhead(self) -> float:
        return self.total - self.upload


@dataclass
class Measured:
    samples: list[Sample] = field(default_factory=list)
    missing: int = 0

    def p(self, q: float, what: str = "overhead") -> float:
        return percentile([getattr(s, what) for s in self.samples], q)


def upload_time(fake: Any, event: MessageEvent, token: str | None, path: str | None = None) -> float:
    """The fake's handling of the request that created ``event``: its handler start -> the event."""
    needle = token or path
    assert needle is not None
    records: list[RequestRecord] = [
        r for r in fake.requests if r.method == "POST" and needle in r.path and r.time <= event.time
    ]
    if not records:
        raise LookupError(f"no request record for message {event.id}")
    return event.time - max(records, key=lambda r: r.time).time


def deliveries(w: World) -> dict[str, MessageEvent]:
    """The first message with an attachment that names each job, by the text between backticks."""
    found: dict[str, MessageEvent] = {}
    for e in w.fake.events:
        if e.kind == "create" and e.attachments and "`" in (e.content or ""):
            job = e.content.rsplit("`", 2)[-2]
            found.setdefault(job, e)
    return found


def bot_jobs(w: World) -> list[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(f"file:{w.real.db}?mode=ro", uri=True, timeout=1)) as db:
        rows = db.execute(
            "SELECT id, api_job_id, interaction_id FROM jobs WHERE state = 'delivered'"
        ).fetchall()
    return [(str(a), str(b), int(c)) for a, b, c in rows]


def completed_at(w: World, api_id: str) -> float:
    job = w.emu.service.jobs[api_id]
    moment: datetime | None = job.completed_at
    assert moment is not None
    return moment.timestamp()


async def through_the_bot(w: World, n: int, offsets: list[float]) -> Measured:
    for i in range(n):  # each member's jobs spread out: ten members round-robin
        await w.animate(w.members[i % len(w.members)])
    return await collect(w, n, offsets, timeout=60 + n * 17 * TIME_SCALE)


async def collect(w: World, n: int, offsets: list[float], *, timeout: float, poll: float = 0.2) -> Measured:
    """Wait until the bot has delivered ``n`` jobs (its store says so, read every ``poll`` s), then
    measure each one: the emulator's completedAt -> the fake's record of the message with the
    video. ``offsets[0]`` turns the fake's clock into wall time; the offset at the end is appended
    (for the drift)."""
    deadline = time.monotonic() + timeout
    while len(rows := bot_jobs(w)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(rows)} of {n} delivered:\n{w.bot.log()[-3000:]}")
        await asyncio.sleep(poll)
    offsets.append(w.fake_to_wall())
    events = deliveries(w)
    measured = Measured()
    for job_id, api_id, interaction_id in rows:
        event = events.get(job_id)
        if event is None:
            measured.missing += 1
            continue
        token = w.fake.interactions_by_id[interaction_id].token
        measured.samples.append(
            Sample(
                job_id,
                completed_at(w, api_id),
                event.time + offsets[0],
                upload_time(w.fake, event, token),
            )
        )
    return measured


async def bare_deliverer(w: World, n: int, offsets: list[float]) -> Measured:
    """The floor: webhook in, MP4 fetched, MP4 posted to the channel, nothing else."""
    channel_path = f"/channels/{w.channel.id}/messages"
    session = aiohttp.ClientSession(headers={"Authorization": f"Bot {TOKEN}"})
    done: dict[str, asyncio.Event] = {}

    async def webhook(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        async with session.get(event["url"]) as r:
            video = await r.read()
        form = aiohttp.FormData()
        payload = {"content": f"your animation is ready · job `{event['id']}`", "attachments": [
            {"id": 0, "filename": "animation.mp4"}
        ]}  # fmt: skip
        form.add_field("payload_json", json.dumps(payload), content_type="application/json")
        form.add_field("files[0]", video, filename="animation.mp4", content_type="video/mp4")
        async with session.post(w.fake.api_base + channel_path, data=form) as r:
            await r.read()
            if r.status != 200:
                say(f"[delivery] bare deliverer: {r.status} {await r.text()}")
        done.setdefault(event["id"], asyncio.Event()).set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    image = "data:image/png;base64," + base64.b64encode(PNG).decode()
    slots = asyncio.Semaphore(10)  # the account's ten, as the bot's scheduler keeps them
    client = DoitongClient(w.emu.base_url, PRO_KEY)
    api_ids: list[str] = []

    async def one() -> None:
        async with slots:
            job = await client.create_job(
                CreateRequest(
                    image_url=image, prompt="the harbour at dusk", version="gen-2", webhook_url=hook
                ),
                idempotency_key=uuid.uuid4().hex,
            )
            api_ids.append(job.id)
            await done.setdefault(job.id, asyncio.Event()).wait()

    try:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=60 + n * 17 * TIME_SCALE)
    finally:
        await client.aclose()
        await runner.cleanup()
        await session.close()
    measured = Measured()
    events = deliveries(w)
    for api_id in api_ids:
        event = events.get(api_id)
        if event is None:
            measured.missing += 1
            continue
        measured.samples.append(
            Sample(
                api_id,
                completed_at(w, api_id),
                event.time + offsets[0],
                upload_time(w.fake, event, None, channel_path),
            )
        )
    return measured


async def _measure(smoke: bool, result: Result) -> None:
    n = 5 if smoke else 100
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    async with world(tmp, members=MEMBERS, time_scale=TIME_SCALE, sync=False) as w:
        offsets = [w.fake_to_wall()]
        bot = await through_the_bot(w, n, offsets)
        bound = await bare_deliverer(w, n, offsets)
        offsets.append(w.fake_to_wall())
    drift = max(offsets) - min(offsets)
    result.figure(
        f"delivery overhead, p50 / p95 / max ({len(bot.samples)} jobs)",
        f"{ms(bot.p(50))} / {ms(bot.p(95))} / {ms(bot.p(100))}",
        f"{ms(bound.p(50))} / {ms(bound.p(95))} / {ms(bound.p(100))} bare deliverer",
    )
    result.figure(
        "API completion -> message received, upload included (p50 / p95)",
        f"{ms(bot.p(50, 'total'))} / {ms(bot.p(95, 'total'))}",
        f"{ms(bound.p(50, 'total'))} / {ms(bound.p(95, 'total'))} bare deliverer",
    )
    result.figure(
        "upload as the fake saw it (p50 / p95)",
        f"{ms(bot.p(50, 'upload'))} / {ms(bot.p(95, 'upload'))}",
        f"{ms(bound.p(50, 'upload'))} / {ms(bound.p(95, 'upload'))} bare deliverer",
    )
    result.figure("clock offset drift over the run (fake clock -> wall clock)", ms(drift))
    if bot.missing or bound.missing:
        result.figure("deliveries not found in the fake's events", f"{bot.missing} / {bound.missing} bare")
    result.target(f"p95 < {TARGET_P95 * 1000:.0f} ms (webhooks)", ms(bot.p(95)), bot.p(95) < TARGET_P95)
    result.note(
        f"{n} /animate from {MEMBERS} members at once (gen-2, 5 s), Pro account (10 at a time), time "
        f"scale {TIME_SCALE} (a job: 2 + 15 emulated s = {17 * TIME_SCALE:.2f} s); webhooks on; "
        "every result went by the interaction follow-up. Upload = the fake's handler start -> "
        "message stored; completion = the emulator's completedAt."
    )


def run(smoke: bool) -> Result:
    result = Result("delivery", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
