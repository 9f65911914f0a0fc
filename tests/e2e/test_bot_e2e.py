"""/animate end to end: the unmodified bot process, the Discord fake and the API emulator.

Everything crosses real loopback sockets: the bot logs in to the fake over REST and its
gateway, reads the attachment from the fake's CDN, calls the emulator, receives its signed
webhooks, and posts the MP4 back to the fake.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.jobs import JobState
from bot.media.video import probe
from testkit.accounts import FREE_KEY, WEBHOOK_SECRET
from testkit.e2e_world import PNG, World, world
from testkit.images import picture

pytestmark = pytest.mark.timeout(180)


def video_of(event: Any) -> bytes:
    (attachment,) = event.attachments
    assert attachment.filename.endswith(".mp4")
    data: bytes = attachment.data
    return data


async def final_message(w: World, it: Any, timeout: float = 60) -> Any:
    """The delivery: the first message (any route) that mentions the requester after the card."""
    mention = f"<@{it.user.id}>"
    return await w.fake.wait_for(
        lambda e: e.kind == "create" and mention in (e.content or ""), timeout=timeout
    )


# --- happy paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("webhooks", [True, False], ids=["webhook", "poll-only"])
async def test_animate_delivers_the_video(tmp_path: Path, webhooks: bool) -> None:
    async with world(tmp_path, webhooks=webhooks) as w:
        if webhooks:  # publish the commands the way an operator does, then use their types
            code, out = await w.bot.run_command("sync", "--guild", str(w.guild.id))
            assert code == 0, out
            assert "published 13 commands" in out
            assert {c["name"] for c in w.fake.commands(guild=w.guild)} == {
                "animate",
                "jobs",
                "cancel",
                "quota",
                "animate-channels",
                "pool",
                "credits",
                "filter",
                "settings",
                "animate-defaults",
                "modlog",
                "Animate this image",
                "showcase",
            }
        it = await w.animate(duration=10, aspect_ratio="9:16", motion="high", version="gen-3")
        ack = await it.wait_acknowledged(timeout=3)
        assert ack.type == 5  # deferred at once
        card = await w.fake.wait_for(lambda e: e.interaction_id == it.id and bool(e.embeds), timeout=15)
        assert "Animation" in card.embeds[0]["title"] and "gen-3" in card.embeds[0]["description"]
        assert next(c["custom_id"] for row in card.components for c in row["components"]).startswith(
            "job:cancel:"
        )
        done = await final_message(w, it)
        info = probe(video_of(done))
        assert abs(info.duration - 10) <= 1 / info.fps
        assert abs(info.width / info.height - 9 / 16) < 0.02
        assert "100 credits" in done.content
        jobs = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.DELIVERED)
        assert jobs[0].delivery_note == "interaction follow-up: video"
        stats = w.api_stats()
        assert stats["jobs_created"] == 1
        if webhooks:
            assert stats["status_reads"] == 0  # the webhook answered; the poller stayed quiet
        await asyncio.sleep(0.5)
        mentions = [
            e for e in w.fake.events if e.kind == "create" and f"<@{w.alice.id}>" in (e.content or "")
        ]
        assert len(mentions) == 1  # delivered once
        # What the operator's Prometheus sees of it, on the receiver's port.
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(w.bot.health_url.replace("/healthz", "/metrics"))).text
        assert 'animate_jobs{state="queued"} 0.0' in metrics
        assert "animate_admission_seconds_count 1.0" in metrics
        assert "animate_delivery_seconds_count 1.0" in metrics
        assert "animate_leader 1.0" in metrics


async def test_dm_context(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        it = await w.animate(dm=True, version="gen-2")
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert probe(video_of(done)).duration == pytest.approx(5, abs=0.2)
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.DELIVERED)
        assert job.guild_id is None


# --- bad input -------------------------------------------------------------------------------


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), "red").save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ((b"%PDF-1.4 not a picture", "doc.png", "image/png"), "not an image"),
        ((gif(), "anim.gif", "image/gif"), "declared as 'image/gif'"),
        ((gif(), "anim.png", "image/png"), "GIF image"),
        ((picture(40, 40), "tiny.png", "image/png"), "at least 64 px"),
        ((b"\x89PNG" + b"\0" * (10 * 1024 * 1024 + 1), "huge.png", "image/png"), "limit is 10.0 MiB"),
    ],
    ids=["not-an-image", "declared-gif", "disguised-gif", "too-small", "too-big"],
)
async def test_bad_image_is_refused_privately(
    tmp_path: Path, upload: tuple[bytes, str, str], message: str
) -> None:
    async with world(tmp_path) as w:
        data, name, ctype = upload
        it = await w.animate(image=data, filename=name, content_type=ctype)
        await it.wait_acknowledged(timeout=3)
        reply = await w.fake.wait_for(lambda e: e.interaction_id == it.id and e.ephemeral, timeout=15)
        assert message in reply.content and "Can't animate" in reply.content
        assert await w.bot.jobs() == []
        assert w.api_stats()["requests"] == 0
        assert it.original_message is None or it.original_message.deleted  # the public "thinking" is gone


async def test_prompt_over_the_limit_is_refused(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        it = await w.fake.invoke_slash(
            "animate", user=w.alice, guild=w.guild, channel=w.channel, options={"prompt": "x" * 1001},
            attachments={"image": (PNG, "p.png", "image/png")}, validate=False,
        )  # fmt: skip
        await it.wait_acknowledged(timeout=3)
        reply = await w.fake.wait_for(lambda e: e.interaction_id == it.id and e.ephemeral, timeout=15)
        assert "1,000" in reply.content  # grouped for the language (English here)
        assert await w.bot.jobs() == [] and w.api_stats()["requests"] == 0


# --- quota -----------------------------------------------------------------------------------


async def test_two_at_once_on_free_plan_one_goes_through(tmp_path: Path) -> None:
    async with world(tmp_path, extra={"DEFAULT_USER_PLAN": "free"}) as w:
        first, second = await asyncio.gather(w.animate(), w.animate())
        for it in (first, second):
            await it.wait_acknowledged(timeout=3)
        refusal = await w.fake.wait_for(
            lambda e: e.ephemeral and "already have 1 animation" in e.content, timeout=15
        )
        assert "Free plan" in refusal.content and "frees" in refusal.content
        await w.bot.wait_jobs(lambda js: len(js) == 1 and js[0].state is JobState.DELIVERED)
        assert w.api_stats()["jobs_created"] == 1


# --- crashes and restarts --------------------------------------------------------------------


async def test_kill_9_mid_job_then_restart_delivers_once(tmp_path: Path) -> None:
    # Slow jobs (about 3 s) so the kill lands while the API is working on it.
    async with world(tmp_path, emu={"processing_seconds": 150}) as w:
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        await w.bot.kill()
        await w.bot.start()
        await w.fake.wait_for_ready(timeout=30, count=2)
        done = await final_message(w, it)
        assert probe(video_of(done)).frames > 0
        await asyncio.sleep(1.0)
        deliveries = [
            e for e in w.fake.events if e.kind == "create" and f"<@{w.alice.id}>" in (e.content or "")
        ]
        assert len(deliveries) == 1
        assert w.api_stats()["jobs_created"] == 1


async def test_buttons_work_on_an_old_card_after_restart(tmp_path: Path) -> None:
    async with world(tmp_path, emu={"processing_seconds": 1500}) as w:  # ~30 s: stays running
        first = await w.animate(version="gen-2")
        await first.wait_acknowledged(timeout=3)
        card = await w.fake.wait_for(lambda e: e.interaction_id == first.id and bool(e.embeds), timeout=15)
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        early = await w.fake.click_button(card.message, f"job:cancel:{job.id}", user=w.bob)
        await early.wait_acknowledged(timeout=3)  # the live card's button, before any restart
        (refused,) = await early.wait_for_messages(n=1, timeout=10)
        assert "Only the person who asked" in refused.content
        assert await w.bot.stop() == 0  # a clean stop (SIGTERM) this time
        await w.bot.start()
        await w.fake.wait_for_ready(timeout=30, count=2)

        denied = await w.fake.click_button(card.message, f"job:cancel:{job.id}", user=w.bob)
        await denied.wait_acknowledged(timeout=3)
        (no,) = await denied.wait_for_messages(n=1, timeout=10)
        assert "Only the person who asked" in no.content

        click = await w.fake.click_button(card.message, f"job:cancel:{job.id}", user=w.alice)
        await click.wait_acknowledged(timeout=3)
        (answer,) = await click.wait_for_messages(n=1, timeout=10)
        assert f"Cancelled job `{job.id}`" in answer.content
        await w.bot.wait_jobs(lambda js: js[0].state is JobState.CANCELLED)

        again = await w.fake.click_button(card.message, f"job:again:{job.id}", user=w.alice)
        await again.wait_acknowledged(timeout=3)
        new_card = await w.fake.wait_for(
            lambda e: e.interaction_id == again.id and bool(e.embeds), timeout=15
        )
        assert new_card.embeds[0]["title"] != card.embeds[0]["title"]
        jobs = await w.bot.wait_jobs(lambda js: len(js) == 2)
        assert {j.options.prompt for j in jobs} == {"the sea moves"}


# --- webhooks --------------------------------------------------------------------------------


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_forged_missing_replayed_and_oversized_webhooks_change_nothing(tmp_path: Path) -> None:
    async with world(tmp_path, emu={"processing_seconds": 500}) as w:  # ~10 s of processing
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        fake_end = json.dumps(
            {"id": job.api_job_id, "status": "completed", "url": "http://evil.example/x.mp4"}
        )
        body = fake_end.encode()
        async with httpx.AsyncClient() as http:
            url = w.bot.webhook_url
            assert (await http.post(url, content=body)).status_code == 401
            assert (
                await http.post(url, content=body, headers={"X-Doitong-Signature": sign(body, "guess")})
            ).status_code == 401
            big = b'{"id": "' + b"x" * 100_000 + b'"}'
            assert (
                await http.post(url, content=big, headers={"X-Doitong-Signature": sign(big)})
            ).status_code == 413
            assert (
                await http.post(url, content=b"{", headers={"X-Doitong-Signature": sign(b"{")})
            ).status_code == 400
            (still,) = await w.bot.jobs()
            assert still.state is JobState.PROCESSING and still.result_url is None
            # A genuine, signed failure report, delivered twice: applied once.
            real = json.dumps(
                {"id": job.api_job_id, "status": "failed", "error": "model overloaded"}
            ).encode()
            for _ in range(2):
                answer = await http.post(url, content=real, headers={"X-Doitong-Signature": sign(real)})
                assert answer.status_code == 200
        notice = await final_message(w, it)
        assert "model overloaded" in notice.content
        await asyncio.sleep(0.5)
        assert (
            len([e for e in w.fake.events if e.kind == "create" and "model overloaded" in (e.content or "")])
            == 1
        )
        (ended,) = await w.bot.jobs()
        assert ended.outcome == "failed" and ended.state is JobState.DELIVERED


# --- outliving the token, and the upload limit -----------------------------------------------


async def test_result_after_the_token_expired_arrives_in_the_channel(tmp_path: Path) -> None:
    # The fake's tokens live 2 s; the job takes ~4 s.
    async with world(tmp_path, emu={"processing_seconds": 200}, fake={"token_lifetime": 2.0}) as w:
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert done.route == "channel_post"
        assert probe(video_of(done)).frames > 0
        # The card was brought up to date with the bot's own token after the token died.
        await w.fake.wait_for(lambda e: e.kind == "edit" and e.route == "channel_edit", timeout=15)


async def test_too_large_is_re_encoded_then_linked(tmp_path: Path) -> None:
    async with world(tmp_path, emu={"crf": 0, "video_height": 120, "fps": 12}) as w:
        big = await w.animate(version="gen-2", limit=40_000)
        await big.wait_acknowledged(timeout=3)
        fitted = await final_message(w, big)
        data = video_of(fitted)
        assert len(data) <= 40_000 and "re-encoded" in fitted.content
        info = probe(data)
        assert abs(info.duration - 5) <= 1 / info.fps and abs(info.width / info.height - 16 / 9) < 0.03

    async with world(tmp_path / "b", emu={"crf": 0, "video_height": 120, "fps": 12}) as w:
        tiny = await w.animate(version="gen-2", limit=3_000)
        await tiny.wait_acknowledged(timeout=3)
        linked = await final_message(w, tiny)
        assert linked.attachments == [] and "/outputs/" in linked.content and "expires" in linked.content


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:  # each world gets its own folder
    (tmp_path / "b").mkdir()
    return tmp_path


# --- more of what a member sees ----------------------------------------------------------------


async def test_jobs_lists_and_a_moderator_cancels_with_the_command(tmp_path: Path) -> None:
    async with world(tmp_path, emu={"processing_seconds": 1500}) as w:
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        (job,) = await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        listing = await w.fake.invoke_slash("jobs", user=w.alice, guild=w.guild, channel=w.channel)
        (shown,) = await listing.wait_for_messages(n=1, timeout=10)
        assert shown.ephemeral and job.id in shown.embeds[0]["description"]
        assert "processing" in shown.embeds[0]["description"]
        cancel = await w.fake.invoke_slash(
            "cancel", user=w.mod, guild=w.guild, channel=w.channel, options={"job_id": job.id}
        )
        (answer,) = await cancel.wait_for_messages(n=1, timeout=10)
        assert answer.ephemeral and f"Cancelled job `{job.id}`" in answer.content
        (ended,) = await w.bot.wait_jobs(lambda js: js[0].state is JobState.CANCELLED)
        assert ended.outcome == "cancelled"
        again = await w.fake.invoke_slash(
            "cancel", user=w.alice, guild=w.guild, channel=w.channel, options={"job_id": job.id}
        )
        (late,) = await again.wait_for_messages(n=1, timeout=10)
        assert "already ended" in late.content


async def test_a_bot_token_alone_uses_the_built_in_emulator(tmp_path: Path) -> None:
    async with world(tmp_path, api_key=None, webhooks=False) as w:
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert probe(video_of(done)).frames > 0
        assert w.api_stats()["requests"] == 0  # the test's emulator was not used
        assert "built-in emulator" in w.bot.log()


async def test_stuck_job_times_out_and_is_given_back(tmp_path: Path) -> None:
    async with world(
        tmp_path, emu={"processing_seconds": 5000}, webhooks=False, extra={"JOB_TIMEOUT": "1"}
    ) as w:
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        notice = await final_message(w, it)
        assert "did not finish" in notice.content and "does not count" in notice.content
        (job,) = await w.bot.wait_jobs(lambda js: js[0].state is JobState.DELIVERED)
        assert job.outcome == "expired"


async def test_a_413_from_discord_falls_back_to_the_link(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.fake.inject("POST /webhooks/*", status=413, code=40005, message="Request entity too large")
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert done.attachments == [] and "/outputs/" in done.content and "expires" in done.content


async def test_no_token_and_no_channel_permission_reaches_the_member_by_dm(tmp_path: Path) -> None:
    async with world(tmp_path, emu={"processing_seconds": 200}, fake={"token_lifetime": 2.0}) as w:
        w.fake.set_bot_permissions(w.channel, send=False)
        it = await w.animate(version="gen-2")
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert done.route == "dm_post" and probe(video_of(done)).frames > 0


async def test_queued_job_shows_its_place(tmp_path: Path) -> None:
    # The account (Free) runs one job at a time: bob's waits behind alice's.
    async with world(tmp_path, emu={"processing_seconds": 300}, plan="free", api_key=FREE_KEY) as w:
        first = await w.animate(w.alice, version="gen-2")
        await w.bot.wait_jobs(lambda js: js and js[0].state is JobState.PROCESSING)
        second = await w.animate(w.bob, version="gen-2")
        card = await w.fake.wait_for(lambda e: e.interaction_id == second.id and bool(e.embeds), timeout=15)
        state = next(f["value"] for f in card.embeds[0]["fields"] if f["name"] == "State")
        assert "#1 in the queue" in state
        await final_message(w, first)
        await final_message(w, second)
        assert w.api_stats("free")["rate_limited"] == 0


async def test_the_bots_heartbeat_latency_is_a_round_trip_not_the_interval(tmp_path: Path) -> None:
    # discord.py measures from its HEARTBEAT to the ACK. Before, the fake answered on loopback
    # before discord.py had started its clock, so the bot read the whole interval as its latency
    # (and logged "Can't keep up, websocket is 41 s behind" at Discord's interval).
    interval = 1.5
    async with world(tmp_path, fake={"heartbeat_interval_ms": int(interval * 1000)}) as w:
        conn = w.fake.gateway.connections[-1]
        async with httpx.AsyncClient() as http:
            for beats in range(3, 6):  # the first beat at HELLO, then one per interval
                while conn.heartbeats < beats:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # its ACK has been read
                latency = (await http.get(w.bot.health_url)).json()["latency_ms"]
                assert latency is not None and latency < interval * 1000 / 3, f"beat {beats}: {latency} ms"
        assert "Can't keep up" not in w.bot.log()
