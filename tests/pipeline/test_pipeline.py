"""The job pipeline (scheduler, poller, webhook, delivery) against the real emulator, no Discord."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.api.budget import RequestBudget
from bot.api.client import DoitongClient, RetryPolicy
from bot.community.admission import Policy, admit
from bot.inbound.receiver import WebhookReceiver
from bot.jobs import Job, JobOptions, JobState
from bot.pipeline.delivery import Route
from bot.pipeline.pipeline import Pipeline, PipelineOptions, guarded
from bot.store import NewJob, Store, StoreUnavailable, pools
from emulator.server import Emulator
from shared import contract
from shared.webhooks import WEBHOOK_PATH
from testkit.accounts import PRO_KEY, WEBHOOK_SECRET, emulator_config
from testkit.books import ledger_sum
from testkit.images import picture
from testkit.recording_messenger import RecordingMessenger

IMAGE = "data:image/png;base64," + base64.b64encode(picture(160, 120)).decode()
PRO = contract.PLANS["pro"]


async def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


class Harness:
    def __init__(self, store: Store, emu: Emulator, webhooks: bool, messenger: RecordingMessenger) -> None:
        self.store = store
        self.emu = emu
        self.messenger = messenger
        window = 60 * emu.config.time_scale
        self.budget = RequestBudget(PRO.requests_per_minute, window)
        self.client = DoitongClient(
            emu.base_url, PRO_KEY, retry=RetryPolicy(max_retries=3, base_delay=0.01),
            before_request=self.budget.acquire, on_rate_limit=self.budget.observe,
        )  # fmt: skip
        self.receiver = WebhookReceiver(WEBHOOK_SECRET.encode(), self._report) if webhooks else None
        self.webhooks = webhooks
        self.pipeline: Pipeline | None = None

    async def _report(self, api_job) -> bool:  # type: ignore[no-untyped-def]
        assert self.pipeline is not None
        return await self.pipeline.report(api_job)

    async def __aenter__(self) -> Harness:
        url = None
        if self.receiver is not None:
            await self.receiver.start("127.0.0.1", 0)
            url = f"http://127.0.0.1:{self.receiver.port}{WEBHOOK_PATH}"
        window = 60 * self.emu.config.time_scale
        self.pipeline = Pipeline(
            self.store, self.client, self.messenger,
            PipelineOptions(plan=PRO, webhook_url=url, rate_window=window, job_timeout=30,
                            progress_interval=0.2),
        )  # fmt: skip
        await self.pipeline.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.pipeline is not None
        await self.pipeline.stop()
        if self.receiver is not None:
            await self.receiver.stop()
        await self.client.aclose()

    async def add(self, user: int = 1, **options: object) -> str:
        new = NewJob(source="discord", image_ref=IMAGE, options=JobOptions(prompt="p", **options),
                     user_id=user, channel_id=5, guild_id=6)  # fmt: skip
        job = (await admit(self.store, new, Policy(default_plan="pro", welcome_credits=1_000_000))).job
        await self.store.set_status_card(job.id, 5, 99)
        assert self.pipeline is not None
        self.pipeline.accepted(job)
        return job.id

    async def delivered(self, job_id: str) -> bool:
        job = await self.store.get_job(job_id)
        return job is not None and job.state is JobState.DELIVERED


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(emulator_config(time_scale=0.02)) as e:
        yield e


@pytest.mark.parametrize("webhooks", [True, False], ids=["webhook", "poll-only"])
async def test_job_is_delivered_once_with_the_video(store: Store, emu: Emulator, webhooks: bool) -> None:
    messenger = RecordingMessenger()
    async with Harness(store, emu, webhooks, messenger) as h:
        job_id = await h.add(version="gen-2")
        await wait_for(lambda: h.delivered(job_id))
        await asyncio.sleep(0.3)  # a late duplicate (poll after webhook) must change nothing
        assert h.pipeline is not None
        reads = h.pipeline.poller.reads
    assert [(s.job_id, s.route) for s in messenger.sent] == [(job_id, Route.INTERACTION)]
    sent = messenger.sent[0]
    assert sent.attachment is not None and sent.attachment.data[4:8] == b"ftyp"
    assert "<@1>" in sent.text and "10 credits" in sent.text
    if webhooks:
        assert reads == 0  # the webhook came first; no status poll was needed
    job = await store.get_job(job_id)
    assert job is not None and job.outcome == "completed" and job.actual_credits == 10
    # The card says "Done, sending…" while the result goes out, then that it was delivered (the
    # progress loop may repaint "completed" if it reads the job in between; never after).
    ends = [
        state for jid, state, _ in messenger.statuses if jid == job_id and state in ("completed", "delivered")
    ]
    assert ends[0] == "completed" and ends[-1] == "delivered" and ends.count("delivered") == 1


async def test_failed_job_gets_its_reason(store: Store, emu: Emulator) -> None:
    messenger = RecordingMessenger()
    emu.inject(["fail_job"])
    async with Harness(store, emu, True, messenger) as h:
        job_id = await h.add()
        await wait_for(lambda: h.delivered(job_id))
    (sent,) = messenger.sent
    assert sent.attachment is None and "failed" in sent.text and "Nothing was charged" in sent.text
    job = await store.get_job(job_id)
    assert job is not None and job.outcome == "failed"


async def test_lost_webhook_is_caught_by_the_poller(store: Store, emu: Emulator) -> None:
    messenger = RecordingMessenger()
    emu.inject(["drop_webhook"])
    async with Harness(store, emu, True, messenger) as h:
        job_id = await h.add()
        await wait_for(lambda: h.delivered(job_id))
        assert h.pipeline is not None and h.pipeline.poller.reads >= 1
    assert len(messenger.sent) == 1


async def test_falls_back_to_the_next_route_and_to_a_link(store: Store, emu: Emulator) -> None:
    messenger = RecordingMessenger(unavailable={Route.INTERACTION}, refuse_over=0)
    async with Harness(store, emu, True, messenger) as h:
        job_id = await h.add()
        await wait_for(lambda: h.delivered(job_id))
    (sent,) = messenger.sent
    assert sent.route is Route.CHANNEL and sent.attachment is None
    assert "/outputs/" in sent.text and "link expires" in sent.text


async def test_account_concurrency_is_never_exceeded(store: Store, emu: Emulator) -> None:
    plan = contract.Plan("tiny", requests_per_minute=60, concurrent_jobs=2, jobs_per_day=None)
    messenger = RecordingMessenger()
    async with Harness(store, emu, True, messenger) as h:
        assert h.pipeline is not None
        h.pipeline.scheduler.plan = plan
        ids = [await h.add(user=u) for u in range(1, 7)]
        peak = 0
        while not all([await h.delivered(i) for i in ids]):
            peak = max(peak, emu.stats()["accounts"]["pro"]["active_jobs"])
            await asyncio.sleep(0.01)
    assert peak <= 2
    assert sorted(s.job_id for s in messenger.sent) == sorted(ids)


async def test_restart_resumes_and_delivers_once(tmp_path: Path, emu: Emulator) -> None:
    db = tmp_path / "restart.db"
    store = await Store.open(db)
    first = RecordingMessenger()
    async with Harness(store, emu, False, first) as h:
        job_id = await h.add()
        await wait_for(lambda: _state_is(store, job_id, JobState.PROCESSING))
    await store.close()  # stopped mid-job: the row says processing
    assert first.sent == []
    store = await Store.open(db)
    second = RecordingMessenger()
    try:
        async with Harness(store, emu, False, second) as h:
            await wait_for(lambda: h.delivered(job_id))
    finally:
        await store.close()
    assert [s.job_id for s in second.sent] == [job_id]
    assert emu.stats()["accounts"]["pro"]["jobs_created"] == 1


async def _state_is(store: Store, job_id: str, state: JobState) -> bool:
    job = await store.get_job(job_id)
    return job is not None and job.state is state


# --- the receiver on its own -----------------------------------------------------------------


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Doitong-Signature": f"sha256={digest}", "Content-Type": "application/json"}


async def test_receiver_refuses_bad_requests_and_dedupes(store: Store) -> None:
    reports: list[str] = []

    async def report(api_job) -> bool:  # type: ignore[no-untyped-def]
        reports.append(api_job.id)
        return True

    receiver = WebhookReceiver(WEBHOOK_SECRET.encode(), report)
    await receiver.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{receiver.port}{WEBHOOK_PATH}"
    body = json.dumps({"id": "api-1", "status": "completed", "url": "http://x/1.mp4"}).encode()
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.post(url, content=body)).status_code == 401
            assert (await http.post(url, content=body, headers=signed(body, "forged"))).status_code == 401
            assert (await http.post(url, content=body + b" ", headers=signed(body))).status_code == 401
            big = b"{" + b" " * (70 * 1024) + b"}"
            assert (await http.post(url, content=big, headers=signed(big))).status_code == 413
            junk = b"not json"
            assert (await http.post(url, content=junk, headers=signed(junk))).status_code == 400
            wrong_shape = b'{"status": 5}'
            assert (await http.post(url, content=wrong_shape, headers=signed(wrong_shape))).status_code == 400
            assert reports == []
            assert (await http.post(url, content=body, headers=signed(body))).status_code == 200
            assert (await http.get(f"http://127.0.0.1:{receiver.port}/healthz")).json()["ok"] is True
    finally:
        await receiver.stop()
    assert reports == ["api-1"]


async def test_receiver_without_a_secret_accepts_nothing_but_answers_health() -> None:
    reports: list[str] = []

    async def report(api_job) -> bool:  # type: ignore[no-untyped-def]
        reports.append(api_job.id)
        return True

    receiver = WebhookReceiver(None, report)
    await receiver.start("127.0.0.1", 0)
    body = b'{"id": "api-1", "status": "completed"}'
    empty_key_signature = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    try:
        async with httpx.AsyncClient() as http:
            base = f"http://127.0.0.1:{receiver.port}"
            answer = await http.post(base + WEBHOOK_PATH, content=body,
                                     headers={"X-Doitong-Signature": empty_key_signature})  # fmt: skip
            assert answer.status_code == 401
            assert (await http.get(base + "/healthz")).status_code == 200
    finally:
        await receiver.stop()
    assert reports == []


async def test_a_job_finished_during_downtime_is_read_not_expired(tmp_path: Path, emu: Emulator) -> None:
    db = tmp_path / "down.db"
    store = await Store.open(db)
    async with Harness(store, emu, False, RecordingMessenger()) as h:
        job_id = await h.add()
        await wait_for(lambda: _state_is(store, job_id, JobState.PROCESSING))
    await emu.wait_idle()  # it completes at the API while the bot is down
    await asyncio.sleep(1.1)  # and longer ago than the timeout below
    second = RecordingMessenger()
    async with Harness(store, emu, False, second) as h:
        assert h.pipeline is not None
        h.pipeline.poller.job_timeout = 1.0
        await wait_for(lambda: h.delivered(job_id))
    await store.close()
    (sent,) = second.sent
    assert sent.attachment is not None  # the video, not "did not finish"


async def test_the_bot_leaves_the_cli_jobs_alone(store: Store, emu: Emulator) -> None:
    cli_job = await store.insert_job(
        NewJob(source="cli", image_ref="file:///x.png", options=JobOptions(prompt="p"))
    )
    async with Harness(store, emu, True, RecordingMessenger()) as h:
        job_id = await h.add()
        await wait_for(lambda: h.delivered(job_id))
    untouched = await store.get_job(cli_job.id)
    assert untouched is not None and untouched.state is JobState.QUEUED


async def test_webhook_for_an_unknown_job_asks_for_a_retry(store: Store, emu: Emulator) -> None:
    async with Harness(store, emu, True, RecordingMessenger()) as h, httpx.AsyncClient() as http:
        assert h.receiver is not None
        body = b'{"id": "never-seen", "status": "completed", "url": "http://x/y.mp4"}'
        url = f"http://127.0.0.1:{h.receiver.port}{WEBHOOK_PATH}"
        assert (await http.post(url, content=body, headers=signed(body))).status_code == 503


async def test_account_out_of_credits_pauses_tells_once_and_resumes(store: Store, emu: Emulator) -> None:
    messenger = RecordingMessenger()
    emu.set_credits(PRO_KEY, 0)
    await store.ensure_guild(6, 1_000)
    await store.atomic(lambda tx: pools.update(tx, 6, alert_channel_id=77))
    async with Harness(store, emu, True, messenger) as h:
        assert h.pipeline is not None
        first, second = await h.add(user=1), await h.add(user=2)
        await wait_for(lambda: _paused(h))
        h.pipeline.scheduler.wake()  # more work arriving while paused changes nothing
        await asyncio.sleep(0.2)
        assert [a[0] for a in messenger.alerts] == [77]
        text = messenger.alerts[0][1]
        assert "out of credits" in text and "needs 50, the account has 0" in text
        assert {(await store.get_job(i)).state for i in (first, second)} == {JobState.QUEUED}  # type: ignore[union-attr]
        emu.set_credits(PRO_KEY, 1_000)
        h.pipeline.scheduler.resume()  # what /pool resume does
        await wait_for(lambda: h.delivered(first))
        await wait_for(lambda: h.delivered(second))
    assert len(messenger.alerts) == 1
    assert emu.stats()["accounts"]["pro"]["jobs_created"] == 2


async def _paused(h: Harness) -> bool:
    assert h.pipeline is not None
    return h.pipeline.scheduler.paused_until > time.time()


async def test_api_429s_beyond_the_retries_pause_submitting_then_it_resumes_by_itself(
    store: Store, emu: Emulator
) -> None:
    messenger = RecordingMessenger()
    emu.inject(["429"] * 5)  # more than the client's own 3 retries: the scheduler must back off
    async with Harness(store, emu, True, messenger) as h:
        assert h.pipeline is not None
        job = await h.add(user=1)
        await wait_for(lambda: _paused(h))
        assert h.pipeline.scheduler.pause_reason == "rate limited by the API"
        await wait_for(lambda: h.delivered(job))
    stats = emu.stats()["accounts"]["pro"]
    assert stats["jobs_created"] == 1 and stats["rate_limited"] == 5
    assert messenger.alerts == []  # the bot sorts a 429 out itself; moderators are not paged


async def test_out_of_credits_resumes_by_itself_once_a_probe_succeeds(store: Store, emu: Emulator) -> None:
    messenger = RecordingMessenger()
    emu.set_credits(PRO_KEY, 0)
    async with Harness(store, emu, True, messenger) as h:
        job = await h.add(user=1)
        await wait_for(lambda: _paused(h))
        emu.set_credits(PRO_KEY, 1_000)  # the operator topped up the account; nobody ran /pool resume
        await wait_for(lambda: h.delivered(job))
    assert len(messenger.alerts) == 1


@pytest.mark.parametrize("history", [True, False], ids=["history-readable", "history-hidden"])
async def test_a_crash_between_posting_and_recording_does_not_post_twice(
    store: Store, emu: Emulator, history: bool
) -> None:
    first = RecordingMessenger(crash_after_send=True)
    async with Harness(store, emu, True, first) as h:
        job_id = await h.add(user=1)
        await wait_for(lambda: _has_sent(first, job_id))
    assert (await store.get_job(job_id)).state is JobState.COMPLETED  # type: ignore[union-attr]
    # The restart: the same Discord (the message is there), a process that remembers nothing.
    second = RecordingMessenger(sent=first.sent, history_hidden=not history)
    async with Harness(store, emu, True, second) as h:
        await wait_for(lambda: h.delivered(job_id))
    job = await store.get_job(job_id)
    assert job is not None
    if history:
        assert len(second.sent) == 1 and job.delivery_note == "posted before a restart (found in the channel)"
        assert f"`{job_id}`" in second.sent[0].text
    else:  # without history access the bot cannot tell, and prefers a duplicate to a loss
        assert len(second.sent) == 2


async def _has_sent(messenger: RecordingMessenger, job_id: str) -> bool:
    return any(s.job_id == job_id for s in messenger.sent)


async def test_a_result_no_route_can_reach_is_recorded_undeliverable_and_refunded(
    store: Store, emu: Emulator
) -> None:
    messenger = RecordingMessenger(unavailable=set(Route))  # channel gone, token expired, DMs closed
    async with Harness(store, emu, True, messenger) as h:
        assert h.pipeline is not None
        h.pipeline.delivery.retry_delays = (0.05, 0.05)
        job_id = await h.add(user=1)
        await wait_for(lambda: h.delivered(job_id))
    job = await store.get_job(job_id)
    assert job is not None and job.outcome == "completed" and job.delivery_note is not None
    assert job.delivery_note.startswith("undeliverable")
    assert messenger.sent == []
    guild = await store.get_guild(6)
    assert guild is not None and guild.balance == 1_000_000 == await ledger_sum(store, 6)  # all given back
    kinds = [r.kind for r in await store.ledger_rows(6) if r.job_id == job_id]
    assert sorted(kinds) == ["reserve", "settle", "undelivered"]


async def test_a_job_cancelled_while_running_keeps_its_api_slot_until_the_api_ends_it(
    store: Store, emu: Emulator
) -> None:
    # The API has no cancel call: submitting an 11th job while the cancelled one still runs
    # there would be refused (429, concurrency). The scheduler waits for the API's end instead.
    messenger = RecordingMessenger()
    async with Harness(store, emu, True, messenger) as h:
        assert h.pipeline is not None
        emu.config.processing_seconds = 200  # ~2 s per job at the test time scale
        running = [await h.add(user=u) for u in range(1, PRO.concurrent_jobs + 1)]
        await wait_for(lambda: _all_in(store, running, JobState.PROCESSING))
        victim = await store.get_job(running[0])
        assert victim is not None
        await h.pipeline.cancel(victim, "cancelled by the test")
        newcomer = await h.add(user=99)
        await asyncio.sleep(0.5)
        job = await store.get_job(newcomer)
        assert job is not None and job.state is JobState.QUEUED  # the slot is still taken
        await wait_for(lambda: h.delivered(newcomer))
    stats = emu.stats()["accounts"]["pro"]
    assert stats["rate_limited"] == 0 and stats["jobs_created"] == PRO.concurrent_jobs + 1
    assert not await store.cancelled_at_api(0.0)  # the cancelled job's end was seen


async def _all_in(store: Store, ids: list[str], state: JobState) -> bool:
    jobs = [await store.get_job(i) for i in ids]
    return all(j is not None and j.state is state for j in jobs)


async def test_polling_reads_a_job_about_when_jobs_like_it_have_been_finishing(
    store: Store, emu: Emulator
) -> None:
    emu.config.processing_seconds = 100
    took = (emu.config.queue_seconds + emu.config.processing_seconds) * emu.config.time_scale
    async with Harness(store, emu, False, RecordingMessenger()) as h:
        assert h.pipeline is not None
        first = await h.add(user=1)  # the poller learns how long a job takes from this one
        await wait_for(lambda: h.delivered(first))
        learned = emu.stats()["accounts"]["pro"]["status_reads"]
        assert h.pipeline.poller.seconds_per_5s == pytest.approx(took, rel=0.2)
        later = [await h.add(user=u) for u in range(2, 7)]
        for job_id in later:
            await wait_for(lambda job_id=job_id: h.delivered(job_id))  # type: ignore[misc]
    reads = emu.stats()["accounts"]["pro"]["status_reads"] - learned
    assert reads / len(later) <= 3, reads  # backing off from the first second read each ~10 times


async def test_a_loop_stopped_while_the_database_is_away_stays_stopped() -> None:
    # The scheduler, stopped mid-create (leadership lost), puts the job back in the queue while
    # unwinding; with the database away that write fails and its error replaces the cancel.
    runs = 0

    async def scheduler() -> None:
        nonlocal runs
        runs += 1
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise StoreUnavailable("the database is out of reach") from None

    task = asyncio.create_task(guarded("scheduler", scheduler))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert runs == 1  # not restarted


async def test_a_result_whose_claim_met_the_database_away_is_delivered_soon_after(
    store: Store, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first claim fails as during a PostgreSQL restart: the job must not wait for the
    # sweep (every 15 s) to be found again.
    real_claim = store.claim_delivery
    failed: list[str] = []

    async def claim(job_id: str, owner: str, lease: float) -> Job | None:
        if not failed:
            failed.append(job_id)
            raise StoreUnavailable("the database is out of reach")
        return await real_claim(job_id, owner, lease)

    monkeypatch.setattr(store, "claim_delivery", claim)
    messenger = RecordingMessenger()
    async with Harness(store, emu, True, messenger) as h:
        job_id = await h.add()
        await wait_for(lambda: h.delivered(job_id), timeout=10)
    assert failed == [job_id]
    assert [s.job_id for s in messenger.sent] == [job_id]
