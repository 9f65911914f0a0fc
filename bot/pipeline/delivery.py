"""Delivery: the result (or the reason) reaches the person who asked, once.

The rules live here; Discord itself is behind the small :class:`Messenger` protocol that the
bot implements, so this module is testable without Discord.

Route order: the interaction follow-up while its token lives (15 minutes), then a message in
the channel (with the bot's own token, where it may post and attach), then a DM. A job asked
where the bot is not (a user install, :mod:`bot.community.installs`) skips the channel: the bot
cannot post there, so the token, then a DM. The video is attached when it fits that route's
upload limit; if not, it is re-encoded smaller (PyAV); only when that cannot fit either does
the person get the link, with a word that it expires.

Any process may deliver (several processes share one PostgreSQL store): a job is sent only by
the process holding its claim (``owner`` and a lease on the database's clock, renewed while an
attempt runs). A dead process's claims run out and :meth:`Delivery.sweep` claims them again;
``delivery_started_at`` then makes the new owner look for the message before sending it again.
A clean stop releases its claims (:meth:`Delivery.release`).

A few results go out at once (:data:`WORKERS`): one slow upload or re-encode no longer holds up
a burst of completions behind it. One member's results still go out one at a time, in the
order they were queued (a lock per member, taken in claim order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

import httpx

from bot.i18n import Message, Text, render, say, say_n
from bot.jobs import AWAITING_DELIVERY, IllegalTransition, Job, JobState
from bot.media.fetch import FetchError, fetch_bytes
from bot.media.video import InvalidVideo, fit_to_size
from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 200 * 1024 * 1024  # what we download at most; a 10 s clip is a few MiB
RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)  # when no route works at all (Discord down)
CLAIM_LEASE = 30.0  # seconds a delivery claim holds; renewed every third of it while sending
CLAIM_RETRY = 1.0  # seconds before a claim the database could not take is tried again
# Deliveries at once. Each is mostly waiting (download, upload), so a few overlap well; more
# would only queue on Discord's per-channel rate limit and the one database thread.
WORKERS = 4


class Route(StrEnum):
    INTERACTION = "interaction follow-up"
    CHANNEL = "channel message"
    DM = "direct message"


def routes_for(job: Job) -> tuple[Route, ...]:
    """The routes to try, in order: never the channel of a place the bot is not in."""
    if job.user_install:
        return (Route.INTERACTION, Route.DM)
    return tuple(Route)


# How each route, and what went by it, reads on the card (the stored delivery note stays English).
ROUTE_NAMES: dict[Route, Text] = {
    Route.INTERACTION: say("interaction follow-up"),
    Route.CHANNEL: say("channel message"),
    Route.DM: say("direct message"),
}
SENT_AS: dict[str, Text] = {
    "text": say("text"),
    "video": say("video"),
    "re-encoded video": say("re-encoded video"),
    "link": say("link"),
}


class RouteUnavailable(Exception):
    """This route cannot be used (token expired, no permission, channel gone, DMs closed)."""


class UploadTooLarge(Exception):
    """Discord refused the file as too large (413 / code 40005)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: to find (or delete) it later."""

    channel_id: int
    message_id: int


class Messenger(Protocol):
    def upload_limit(self, job: Job, route: Route) -> int | None:
        """Bytes this route accepts per file, or None when the route cannot be used now."""

    async def send(self, job: Job, route: Route, text: str, attachment: Attachment | None) -> Posted | None:
        """Post ``text`` (mentioning the requester) with the optional file, or raise; where it
        landed (None when the route cannot say)."""

    async def show_status(self, job: Job, detail: Message) -> None:
        """Bring the job's status card up to date (best effort); ``detail`` in the job's language."""

    async def find_sent(self, job: Job, since: float) -> bool | None:
        """Whether the bot already posted this job's result (its id in the text) since ``since``:
        True or False, or None when it cannot tell (no history access)."""

    async def alert(self, channel_id: int | None, text: Message) -> None:
        """A note to a server's moderators in their alert channel (best effort), in the server's
        language."""

    def owns_card(self, job: Job) -> bool:
        """Whether this process keeps the job's status card fresh while it runs: the one whose
        Discord shards carry the job's server (so several processes do not edit one card)."""


class Delivery:
    def __init__(
        self,
        store: Store,
        messenger: Messenger,
        http: httpx.AsyncClient,
        *,
        on_delivered: Callable[[Job], None] | None = None,
        source: str | None = None,
        owner: str | None = None,
        lease: float = CLAIM_LEASE,
        workers: int = WORKERS,
    ) -> None:
        self.store = store
        self.messenger = messenger
        self.http = http
        self.on_delivered = on_delivered
        self.source = source
        self.owner = owner or uuid.uuid4().hex  # this process's name on its claims
        self.lease = lease
        self.batch = 100  # jobs claimed per sweep: what one process takes on at a time
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._attempts: dict[str, int] = {}
        self.retry_delays = RETRY_DELAYS
        self.workers = workers
        self._members: dict[int | None, tuple[asyncio.Lock, int]] = {}  # lock, deliveries using it

    def enqueue(self, job: Job) -> None:
        if job.state in AWAITING_DELIVERY:
            self._enqueue_id(job.id)

    def _enqueue_id(self, job_id: str) -> None:
        if job_id not in self._queued:
            self._queued.add(job_id)
            self._queue.put_nowait(job_id)

    async def resume(self) -> None:
        """After a start: everything finished, not delivered and held by nobody goes out (once)."""
        await self.sweep()

    async def sweep(self) -> int:
        """Claim finished jobs nobody holds (a dead process's, or ones no process took up) and
        queue them; how many."""
        claimed = await self.store.claim_deliveries(
            self.owner, self.lease, source=self.source, limit=self.batch
        )
        for job in claimed:
            self.enqueue(job)
        return len(claimed)

    async def sweep_loop(self) -> None:
        """Sweep every half lease: a dead owner's jobs go out soon after its claims run out."""
        while True:
            await asyncio.sleep(self.lease / 2)
            try:
                await self.sweep()
            except Exception:  # the database away for a moment: the next sweep tries again
                log.exception("delivery sweep failed")

    async def release(self) -> None:
        """Give up this process's claims (a clean stop: the next one need not wait)."""
        await self.store.release_deliveries(self.owner)

    async def run(self) -> None:
        """Deliver what is queued, :attr:`workers` at a time, until cancelled."""
        log.info("delivery: %d worker(s)", self.workers)
        workers = [asyncio.create_task(self._work(), name=f"delivery-{n}") for n in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            self._queued.discard(job_id)
            # Ours to send only with the claim: delivered already or held by a live process: skip.
            try:
                job = await self.store.claim_delivery(job_id, self.owner, self.lease)
            except StoreUnavailable as exc:
                # Not lost with this worker's restart: the job goes back in the queue for later.
                log.warning("job=%s delivery claim failed (%s); trying again shortly", job_id, exc)
                asyncio.get_running_loop().call_later(CLAIM_RETRY, self._enqueue_id, job_id)
                continue
            if job is None:
                continue
            keeper = asyncio.create_task(self._keep_claim(job.id), name=f"claim-{job.id}")
            try:
                async with self._member(job.user_id):  # their earlier result first
                    await self.deliver(job)
            except Exception:
                log.exception("job=%s delivery crashed; will retry", job.id)
                await self._retry_later(job)
            finally:
                # Not awaited: awaiting it under a suppress(CancelledError) would also swallow a
                # cancel of this loop landing right then, and Pipeline.stop would wait forever.
                keeper.cancel()

    @contextlib.asynccontextmanager
    async def _member(self, user_id: int | None) -> AsyncIterator[None]:
        """One delivery at a time per member. The claims come back from the one database
        thread in queue order, and a lock serves its waiters first come, first served, so a
        member's results keep their order. The lock is dropped when nobody uses it."""
        lock, users = self._members.get(user_id, (asyncio.Lock(), 0))
        self._members[user_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._members[user_id]
            if users == 1:
                del self._members[user_id]
            else:
                self._members[user_id] = (lock, users - 1)

    async def _keep_claim(self, job_id: str) -> None:
        """Renew the claim while an attempt runs (a download and a re-encode can be long)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.store.claim_delivery(job_id, self.owner, self.lease)
            except Exception:
                log.exception("job=%s delivery claim renewal failed", job_id)

    async def deliver(self, job: Job) -> bool:
        """Try every route in order; True when the person got it."""
        routes = [
            (r, limit) for r in routes_for(job) if (limit := self.messenger.upload_limit(job, r)) is not None
        ]
        if not routes:
            log.warning("job=%s no route to the requester right now", job.id)
            await self._retry_later(job)
            return False
        if job.delivery_started_at is not None and await self._sent_before_a_crash(job):
            return True
        if job.id not in self._attempts:  # the first attempt: "Done, sending…" while it downloads
            await self._show(job, elapsed(time.time() - job.created_at))
        text, attachment_source = await self._content(job)
        await self.store.mark_delivery_started(job.id, time.time())
        for route, limit in routes:
            try:
                note, posted = await self._send(job, route, text, attachment_source, limit)
            except RouteUnavailable as exc:
                log.info("job=%s %s unavailable: %s", job.id, route, exc)
                continue
            shown = say("%(route)s: %(how)s", route=ROUTE_NAMES[route], how=SENT_AS.get(note, note))
            await self._mark_delivered(job, f"{route}: {note}", posted=posted, shown=shown)
            return True
        log.warning("job=%s no route reached the requester", job.id)
        await self._retry_later(job)
        return False

    async def _sent_before_a_crash(self, job: Job) -> bool:
        """A send was started before (the process died before recording it): look before
        posting again. Discord has no idempotency key for follow-ups, so the message itself,
        which names the job, is the record."""
        found = await self.messenger.find_sent(job, job.delivery_started_at or 0.0)
        if found:
            log.info("job=%s result was already posted before a restart; not sending it twice", job.id)
            await self._mark_delivered(
                job,
                "posted before a restart (found in the channel)",
                shown=say("posted before a restart (found in the channel)"),
            )
            return True
        if found is None:
            log.warning("job=%s cannot check whether the result was already posted; sending it", job.id)
        return False

    async def _content(self, job: Job) -> tuple[str, bytes | None]:
        """The message text (in the job's language) and, for a completed job, the video bytes
        (None if unfetchable)."""
        mention = f"<@{job.user_id}>" if job.user_id else ""
        if job.state is JobState.COMPLETED:
            assert job.result_url is not None
            try:
                video = await fetch_bytes(self.http, job.result_url, max_bytes=MAX_VIDEO_BYTES)
            except FetchError as exc:
                log.warning("job=%s video fetch failed (%s); sending the link", job.id, exc)
                video = None
            ready = say("%(mention)s your animation is ready! %(what)s", mention=mention, what=describe(job))
            return render(ready, job.locale).strip(), video
        if job.state is JobState.EXPIRED:
            text = say(
                "%(mention)s your animation did not finish: %(reason)s. It does not count toward your "
                "quota (job `%(job)s`).",
                mention=mention, reason=job.error or say("it took too long"), job=job.id,
            )  # fmt: skip
            return render(text, job.locale).strip(), None
        text = say(
            "%(mention)s your animation failed: %(reason)s. Nothing was charged and it does not count "
            "toward your quota (job `%(job)s`).",
            mention=mention, reason=job.error or say("the API gave no reason"), job=job.id,
        )  # fmt: skip
        return render(text, job.locale).strip(), None

    async def _send(
        self, job: Job, route: Route, text: str, video: bytes | None, limit: int
    ) -> tuple[str, Posted | None]:
        if video is None:
            if job.state is JobState.COMPLETED:
                expires = render(say("this link expires: save the video soon"), job.locale)
                text += f"\n{job.result_url} ({expires})"
            return "text", await self.messenger.send(job, route, text, None)
        try:
            fitted = video if len(video) <= limit else await asyncio.to_thread(fit_to_size, video, limit)
        except InvalidVideo:  # not a video we can re-encode: the link is all we can give
            log.warning("job=%s result is not a decodable video; sending the link", job.id)
            fitted = None
        if fitted is not None:
            shrunk = fitted is not video
            refit = say("(re-encoded to fit the %(limit)s upload limit)", limit=_mib(limit))
            body = text + (f"\n{render(refit, job.locale)}" if shrunk else "")
            try:
                # Discord shows a file named SPOILER_... hidden until clicked.
                name = f"{'SPOILER_' if job.spoiler else ''}animation-{job.id}.mp4"
                posted = await self.messenger.send(job, route, body, Attachment(name, fitted))
                return ("re-encoded video" if shrunk else "video"), posted
            except UploadTooLarge:
                log.info("job=%s %s refused %d bytes as too large", job.id, route, len(fitted))
        shown = f"||{job.result_url}||" if job.spoiler else job.result_url
        too_large = say(
            "(too large to attach under the %(limit)s upload limit; this link expires: save the video soon)",
            limit=_mib(limit),
        )
        link = f"\n{shown}\n{render(too_large, job.locale)}"
        return "link", await self.messenger.send(job, route, text + link, None)

    async def _mark_delivered(
        self, job: Job, note: str, *, reached: bool = True, posted: Posted | None = None,
        shown: Message | None = None,
    ) -> None:  # fmt: skip
        """Record the job delivered with ``note`` (stored, in English); its card shows ``shown``."""
        try:
            if reached:
                where = (
                    {"result_channel_id": posted.channel_id, "result_message_id": posted.message_id}
                    if posted
                    else {}
                )
                done = await self.store.transition(
                    job.id, JobState.DELIVERED, expected=job.state, delivered_at=time.time(),
                    delivery_note=note, **where,
                )  # fmt: skip
            else:
                done = await self.store.mark_undeliverable(job, note)
        except IllegalTransition:
            return
        self._attempts.pop(job.id, None)
        log.info("job=%s delivered by %s", job.id, note)
        await self._show(done, shown if shown is not None else note)
        if self.on_delivered is not None:
            self.on_delivered(done)

    async def _show(self, job: Job, detail: Message) -> None:
        try:
            await self.messenger.show_status(job, detail)
        except Exception:  # a status card is cosmetic: it never stops a delivery
            log.exception("job=%s status card update failed", job.id)

    async def _retry_later(self, job: Job) -> None:
        """Try again later; after the last delay, record the job as undeliverable."""
        attempt = self._attempts.get(job.id, 0)
        if attempt >= len(self.retry_delays):
            log.error("job=%s undeliverable after %d attempts", job.id, attempt + 1)
            await self._mark_delivered(
                job,
                "undeliverable: no route reached the requester",
                reached=False,
                shown=say("undeliverable: no route reached the requester"),
            )
            return
        self._attempts[job.id] = attempt + 1
        asyncio.get_running_loop().call_later(self.retry_delays[attempt], self.enqueue, job)


def describe(job: Job) -> Text:
    """What was asked and what it costs: the card's description and the result's line."""
    o = job.options
    credits = job.actual_credits if job.actual_credits is not None else job.estimated_credits
    return say_n(
        "“%(prompt)s” · %(duration)ss %(ratio)s · motion %(motion)s · %(version)s · %(count)s credit · "
        "job `%(job)s`",
        "“%(prompt)s” · %(duration)ss %(ratio)s · motion %(motion)s · %(version)s · %(count)s credits · "
        "job `%(job)s`",
        credits,
        prompt=_short(o.prompt), duration=o.duration, ratio=o.aspect_ratio, motion=o.motion,
        version=o.version, job=job.id,
    )  # fmt: skip


def elapsed(seconds: float) -> Text:
    """A card's "12 sec elapsed" (the duration in the card's language: 12 dtk, 12 s)."""
    return say("%(elapsed)s elapsed", elapsed=timedelta(seconds=max(0, int(seconds))))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"
