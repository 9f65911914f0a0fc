"""What a member's /animate, Animate again and cancel do (Animations), against a real store, the
real emulator and pictures served over HTTP on loopback; the pipeline's loops are not started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from bot.api.client import DoitongClient
from bot.community.admission import Policy, QuotaExceeded
from bot.jobs import InvalidOptions, JobOptions, JobState
from bot.media.image import InvalidImage
from bot.metrics import Metrics
from bot.pipeline.animations import Animations, Cancelled, ImageSource, Requester
from bot.pipeline.pipeline import Pipeline, PipelineOptions
from bot.store import Store, pools
from emulator.server import Emulator
from shared import contract
from testkit.accounts import PRO_KEY
from testkit.images import picture
from testkit.recording_messenger import RecordingMessenger

G, CHAN, OTHER_GUILD = 100, 7, 200
ALICE, BOB = 1, 2
OPTIONS = JobOptions(prompt="the waves roll in", duration=5, version="gen-4")
POLICY = Policy(default_plan="pro", welcome_credits=500)


def member(user_id: int, guild_id: int | None = G) -> Requester:
    return Requester(user_id=user_id, guild_id=guild_id, channel_id=CHAN)


@dataclass
class Pictures:
    """A loopback web server: a real picture, an HTML page, and a count of each path's reads."""

    base: str = ""
    reads: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


@pytest.fixture
async def pictures() -> AsyncIterator[Pictures]:
    served = Pictures()
    bodies = {
        "cat.png": (picture(160, 120), "image/png"),
        "page.png": (b"<!doctype html><html><body>Not found</body></html>", "text/html"),
        "huge.png": (picture(160, 120), "image/png"),
    }

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        served.reads[name] = served.reads.get(name, 0) + 1
        body, kind = bodies[name]
        return web.Response(body=body, content_type=kind)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    served.base = f"http://127.0.0.1:{port}"
    yield served
    await runner.cleanup()


@dataclass
class World:
    animations: Animations
    messenger: RecordingMessenger
    store: Store
    pictures: Pictures


@pytest.fixture
async def w(store: Store, emulator: Emulator, pictures: Pictures) -> AsyncIterator[World]:
    messenger = RecordingMessenger()
    client = DoitongClient(emulator.base_url, PRO_KEY)
    pipeline = Pipeline(store, client, messenger, PipelineOptions(plan=contract.PLANS["pro"]))
    yield World(Animations(store, pipeline, POLICY, metrics=Metrics()), messenger, store, pictures)
    await pipeline.stop()  # no loop was started: this closes its HTTP client
    await client.aclose()


async def books(store: Store, guild_id: int = G) -> tuple[int, int, int]:
    """(jobs, ledger rows, balance): what a refusal must leave as it was."""
    guild = await store.get_guild(guild_id)
    jobs = await store.jobs_in_states(JobState)
    rows = await store.ledger_rows(guild_id, limit=1000)
    return len(jobs), len(rows), guild.balance if guild else 0


# --- request ---------------------------------------------------------------------------------


async def test_an_accepted_request_is_one_queued_job_with_its_place_in_the_queue(w: World) -> None:
    first = await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))
    second = await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(BOB))

    assert (first.position, second.position) == (1, 2)
    stored = await w.store.get_job(first.job.id)
    assert stored is not None and stored.state is JobState.QUEUED
    assert (stored.user_id, stored.guild_id, stored.channel_id) == (ALICE, G, CHAN)
    assert stored.image_ref == w.pictures.url("cat.png") and stored.options == OPTIONS
    assert await books(w.store) == (2, 3, 500 - 2 * OPTIONS.estimated_credits)  # grant + 2 reserves
    metrics = w.animations.metrics
    assert metrics is not None  # /metrics counts both admissions
    assert metrics.registry.get_sample_value("animate_admission_seconds_count") == 2


async def test_a_page_that_is_not_a_picture_is_refused_with_nothing_written_or_charged(w: World) -> None:
    await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))
    before = await books(w.store)

    with pytest.raises(InvalidImage):
        await w.animations.request(ImageSource(w.pictures.url("page.png")), OPTIONS, member(BOB))

    assert w.pictures.reads["page.png"] == 1
    assert await books(w.store) == before
    assert await w.animations.recent(BOB) == []


async def test_a_declared_size_over_the_limit_is_refused_without_downloading(w: World) -> None:
    too_big = ImageSource(w.pictures.url("huge.png"), size=contract.MAX_IMAGE_BYTES + 1)

    with pytest.raises(InvalidImage, match="the limit is"):
        await w.animations.request(too_big, OPTIONS, member(ALICE))

    assert w.pictures.reads.get("huge.png", 0) == 0
    assert await books(w.store) == (0, 0, 0)


async def test_a_member_over_quota_is_told_the_plan_and_nothing_is_written(w: World) -> None:
    w.animations.policy = Policy(default_plan="free", welcome_credits=500)  # Free: one job at once
    cheap = JobOptions(prompt="p", version="gen-2")
    await w.animations.request(ImageSource(w.pictures.url("cat.png")), cheap, member(ALICE))
    before = await books(w.store)

    with pytest.raises(QuotaExceeded, match="Free plan"):
        await w.animations.request(ImageSource(w.pictures.url("cat.png")), cheap, member(ALICE))

    assert await books(w.store) == before
    assert len(await w.animations.recent(ALICE)) == 1


async def test_the_request_that_takes_the_pool_below_its_threshold_alerts_the_moderators(
    w: World,
) -> None:
    await w.store.ensure_guild(G, 500)
    # The moderators' setting, as /pool alert stores it.
    await w.store.atomic(lambda tx: pools.update(tx, G, low_balance_threshold=450, alert_channel_id=55))
    await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))  # 500 -> 450
    assert w.messenger.alerts == []
    await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(BOB))  # -> 400
    assert [channel for channel, _ in w.messenger.alerts] == [55]


# --- again, recent, card_shown ---------------------------------------------------------------


async def test_again_offers_the_earlier_picture_and_options_or_nothing_for_an_unknown_job(w: World) -> None:
    url = w.pictures.url("cat.png")
    job = (await w.animations.request(ImageSource(url, size=1234, declared_type="image/png"), OPTIONS,
                                      member(ALICE))).job  # fmt: skip

    again = await w.animations.again(job.id)

    # The same picture, by URL and by its kept copy (for when the URL has expired).
    assert job.image_sha256 is not None and await w.store.picture(job.image_sha256) is not None
    assert again == (ImageSource(url, sha256=job.image_sha256), OPTIONS)
    assert await w.animations.again("nosuchjob") is None


async def test_again_refuses_an_option_retired_since_the_job_was_stored(w: World) -> None:
    job = (await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))).job
    # A row written by an older release, with a version the API no longer offers.
    await w.store.atomic(lambda tx: tx.write("UPDATE jobs SET version = 'gen-1' WHERE id = ?", (job.id,)))

    with pytest.raises(InvalidOptions, match="version 'gen-1'"):
        await w.animations.again(job.id)


async def test_recent_lists_a_members_own_jobs_newest_first(w: World) -> None:
    source = ImageSource(w.pictures.url("cat.png"))
    older = (await w.animations.request(source, OPTIONS, member(ALICE))).job
    await w.animations.request(source, OPTIONS, member(BOB))
    newer = (await w.animations.request(source, JobOptions(prompt="snow falls"), member(ALICE))).job

    assert [j.id for j in await w.animations.recent(ALICE)] == [newer.id, older.id]
    assert [j.id for j in await w.animations.recent(ALICE, limit=1)] == [newer.id]


async def test_card_shown_records_where_the_status_card_is(w: World) -> None:
    job = (await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))).job

    await w.animations.card_shown(job, CHAN, 9876)

    stored = await w.store.get_job(job.id)
    assert stored is not None and (stored.status_channel_id, stored.status_message_id) == (CHAN, 9876)


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_an_unknown_job(w: World) -> None:
    assert await w.animations.cancel("nosuchjob", ALICE, moderator_of=None, by="alice") == (
        Cancelled.NO_SUCH_JOB,
        None,
    )


async def test_another_member_and_another_servers_moderator_may_not_cancel(w: World) -> None:
    job = (await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))).job

    outcome, _ = await w.animations.cancel(job.id, BOB, moderator_of=None, by="bob")
    assert outcome is Cancelled.NOT_YOURS
    outcome, _ = await w.animations.cancel(job.id, BOB, moderator_of=OTHER_GUILD, by="bob")
    assert outcome is Cancelled.NOT_YOURS

    stored = await w.store.get_job(job.id)
    assert stored is not None and stored.state is JobState.QUEUED
    assert w.messenger.statuses == []


async def test_the_requester_cancels_gets_the_credits_back_and_a_second_cancel_says_it_ended(
    w: World,
) -> None:
    job = (await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))).job

    # The id as a member may paste it: padded, in capitals.
    outcome, cancelled = await w.animations.cancel(
        f"  {job.id.upper()} ", ALICE, moderator_of=None, by="alice"
    )

    assert outcome is Cancelled.DONE
    assert cancelled is not None and cancelled.id == job.id and cancelled.state is JobState.CANCELLED
    assert w.messenger.statuses == [(job.id, "cancelled", "cancelled by alice")]
    assert (await books(w.store))[2] == 500  # the reservation went back to the pool

    outcome, again = await w.animations.cancel(job.id, ALICE, moderator_of=None, by="alice")
    assert outcome is Cancelled.ALREADY_ENDED and again is not None and again.state is JobState.CANCELLED


async def test_a_moderator_of_the_jobs_server_may_cancel_it(w: World) -> None:
    job = (await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))).job

    outcome, cancelled = await w.animations.cancel(job.id, BOB, moderator_of=G, by="a moderator")

    assert outcome is Cancelled.DONE and cancelled is not None and cancelled.state is JobState.CANCELLED
    assert w.messenger.statuses == [(job.id, "cancelled", "cancelled by a moderator")]


async def test_a_job_being_sent_to_the_api_cannot_be_cancelled_yet(w: World) -> None:
    job = (await w.animations.request(ImageSource(w.pictures.url("cat.png")), OPTIONS, member(ALICE))).job
    await w.store.transition(job.id, JobState.SUBMITTING)  # the scheduler is sending it right now

    outcome, _ = await w.animations.cancel(job.id, ALICE, moderator_of=None, by="alice")

    assert outcome is Cancelled.BUSY
    stored = await w.store.get_job(job.id)
    assert stored is not None and stored.state is JobState.SUBMITTING
