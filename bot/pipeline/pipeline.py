"""The life of a job after admission, wired together: scheduler -> completion -> delivery.

Every arrow is a row change in the store first and an action second, so a (re)start finds each
job where it was and carries it on: ``submitting`` jobs are sent again with their stored key,
``processing`` jobs are polled, finished ones are delivered.

Every process runs delivery, the status cards and the webhook reports; only the leader runs
the scheduler and the poller (and whatever :meth:`Pipeline.while_leading` adds: the relay
subscriber), each time it becomes leader (:mod:`bot.pipeline.leader`). Without a
``leadership`` (the tests, one process) the pipeline simply leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx

from bot.api.client import ApiJob, DoitongClient
from bot.i18n import Message, join, say
from bot.inbound.completion import Applied, ReportWriter, api_charge
from bot.inbound.poller import Poller
from bot.jobs import IN_FLIGHT, IllegalTransition, Job, JobState, awaits_the_apis_end
from bot.pipeline.delivery import CLAIM_LEASE, WORKERS, Delivery, Messenger
from bot.pipeline.delivery import elapsed as elapsed_text
from bot.pipeline.leader import LeaderLoops
from bot.pipeline.scheduler import Scheduler
from bot.store import Leadership, Store, StoreUnavailable
from shared import contract

log = logging.getLogger(__name__)

ELAPSED_REFRESH = 15.0  # seconds between status-card edits that only move the elapsed time


class JobBusy(Exception):
    """The job is being handed to the API right now; try again in a moment."""


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    plan: contract.Plan
    webhook_url: str | None = None
    rate_window: float = contract.RATE_WINDOW_SECONDS
    job_timeout: float = 900.0
    progress_interval: float = 5.0  # Discord edits: at most one per job per this many seconds
    source: str = "discord"  # the jobs this pipeline serves (the CLI drives its own)
    leader_tick: float = 1.0  # seconds between leadership ticks (campaign or renewal)
    delivery_lease: float = CLAIM_LEASE  # seconds a delivery claim holds (a dead owner's runs out)
    delivery_workers: int = WORKERS  # results sent at once


Hook = Callable[[], Awaitable[None]]


class Pipeline:
    def __init__(
        self, store: Store, client: DoitongClient, messenger: Messenger, options: PipelineOptions,
        *, leadership: Leadership | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.client = client
        self.messenger = messenger
        self.options = options
        self.leadership = leadership
        self.http = httpx.AsyncClient(timeout=60.0, follow_redirects=True)
        self.scheduler = Scheduler(
            store,
            client,
            options.plan,
            webhook_url=options.webhook_url,
            on_submitted=self._submitted,
            on_ended=self.ended,
            source=options.source,
            on_paused=self._tell_moderators,
            operator_pause=options.rate_window,  # one API window: 60 s live, less when time-scaled
            job_timeout=options.job_timeout,
            fence=leadership.fence if leadership is not None else None,
        )
        self.poller = Poller(
            store,
            client,
            options.plan,
            on_ended=self.ended,
            window=options.rate_window,
            job_timeout=options.job_timeout,
            webhooks=options.webhook_url is not None,
            source=options.source,
            on_api_end=self._api_end_seen,
        )
        self.delivery = Delivery(
            store, messenger, self.http, source=options.source, lease=options.delivery_lease,
            workers=options.delivery_workers,
        )  # fmt: skip
        self.reports = ReportWriter(store, self._after_report)
        self._tasks: list[asyncio.Task[None]] = []
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._while_leading: list[tuple[Hook, Hook]] = []
        self._leader: LeaderLoops | None = None
        self._shown: dict[str, tuple[str, int, float]] = {}  # job -> state, position, when shown
        self._followups: set[asyncio.Task[None]] = set()  # card updates not awaited by their caller

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the leader's loops now (for the health check)."""
        if self.leadership is None:
            return bool(self._leader_tasks)
        return self._leader is not None and self._leader.leading and self.leadership.is_leader

    def while_leading(self, start: Hook, stop: Hook) -> None:
        """Run ``start`` each time this process becomes leader and ``stop`` when it stops (the
        relay subscriber: one stream per bot, and it must not run twice). Call before start()."""
        self._while_leading.append((start, stop))

    async def start(self) -> None:
        """Start every process's loops, and the leader's while this process leads."""
        await self.delivery.resume()
        for name, loop in (
            ("delivery", self.delivery.run),
            ("delivery-sweep", self.delivery.sweep_loop),
            ("progress", self._progress_loop),
        ):
            self._tasks.append(asyncio.create_task(guarded(name, loop), name=name))
        if self.leadership is None:
            await self.start_leading()
            return
        self._leader = LeaderLoops(
            self.leadership, self.start_leading, self.stop_leading, on_notify=self.scheduler.wake,
            tick=self.options.leader_tick,
        )  # fmt: skip
        await self._leader.step()  # the first campaign now: a sole process leads at once
        self._tasks.append(asyncio.create_task(guarded("leader", self._leader.run), name="leader"))

    async def start_leading(self) -> None:
        """The leader's loops. The scheduler's first round resubmits ``submitting`` jobs with
        their stored keys and the poller's reads every ``processing`` job: what a dead leader
        left in flight is carried on by the next one."""
        for name, loop in (("scheduler", self.scheduler.run), ("poller", self.poller.run)):
            self._leader_tasks.append(asyncio.create_task(guarded(name, loop), name=name))
        self.scheduler.wake()
        for start, _ in self._while_leading:
            await start()

    async def stop_leading(self) -> None:
        """Stop the leader's loops (leadership lost, or the process stops)."""
        tasks, self._leader_tasks = self._leader_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, stop in reversed(self._while_leading):
            try:
                await stop()
            except Exception:
                log.exception("stopping a leader-only service failed")

    async def stop(self) -> None:
        """Stop the loops; every job stays recorded where it is for the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._leader_tasks:
            await self.stop_leading()
        try:
            await self.delivery.release()
        except Exception:  # the database away: the claims run out by themselves
            log.exception("releasing the delivery claims failed")
        await self.http.aclose()

    # --- inputs ------------------------------------------------------------------------------

    def accepted(self, job: Job) -> None:
        """A job was admitted: try to submit it now."""
        self.scheduler.wake()

    async def report(self, api_job: ApiJob) -> bool:
        """An end reported by a webhook (or the relay): applied once, then delivered.

        False when no job has this API id (yet: the webhook can outrun the create's answer),
        so the sender is asked to come back. Reports that arrive together share a transaction
        (:class:`ReportWriter`); the answer waits for the commit, not for Discord.
        """
        applied = await self.reports.apply(api_job)
        if applied.job is None:
            log.info("webhook for unknown api job %s: asking the sender to retry", api_job.id)
            return False
        return True

    def _after_report(self, api_job: ApiJob, applied: Applied) -> None:
        """What a committed report sets moving (in the writer: the sender may have hung up)."""
        job = applied.job
        if job is None:
            return
        if awaits_the_apis_end(job):  # cancelled or expired here, now ended there: slot and bill
            if api_job.finished:
                self._api_end_seen(job, api_charge(job, api_job))
            return
        self.poller.observe(job, api_job)
        if applied.ended is not None:
            self.poller.forget(job.id)
            self._hand_on(applied.ended)

    async def abandon_in_flight(self, reason: str) -> None:
        """Fail every job the API was working on (the built-in emulator forgets them on restart)."""
        for job in await self.store.jobs_in_states([JobState.PROCESSING], source=self.options.source):
            with contextlib.suppress(IllegalTransition):
                await self.store.transition(
                    job.id,
                    JobState.FAILED,
                    expected=JobState.PROCESSING,
                    error=reason,
                    completed_at=time.time(),
                )

    async def cancel(self, job: Job, reason: Message) -> Job | None:
        """Stop tracking a job that has not finished. None when it already ended.

        A job being sent this very moment (``submitting``) cannot be cancelled: the API may be
        creating it, and its id must be recorded first. The caller says "try again".
        """
        if job.state is JobState.SUBMITTING:
            raise JobBusy(job.id)
        try:
            cancelled = await self.store.transition(
                job.id, JobState.CANCELLED, expected=job.state, error=str(reason), completed_at=time.time()
            )
        except IllegalTransition:
            return None
        self.poller.forget(job.id)
        self._shown.pop(job.id, None)
        # Not its API slot, nor its bill: the API has no cancel call and runs the job to its
        # end; the scheduler counts the slot, and its pool settles what the API bills, when
        # the poller or the webhook sees that end (_api_end_seen).
        at_api = (
            say("the API had started it: it runs to its end and is billed then")
            if cancelled.api_job_id
            else ""
        )
        await self.messenger.show_status(cancelled, join(reason, at_api))
        return cancelled

    def _api_end_seen(self, job: Job, charged: int) -> None:
        """A job cancelled or expired here has ended at the API: its slot is free, its pool has
        paid what the API billed, and its card says which."""
        self.scheduler.wake()
        detail = (
            say("the API finished it anyway: %(credits)s credits charged", credits=charged)
            if charged else say("the API did not bill it: nothing charged")
        )  # fmt: skip
        if self.messenger.owns_card(job):
            task = asyncio.create_task(self._show_quietly(job, join(job.error or say("cancelled"), detail)))
            self._followups.add(task)
            task.add_done_callback(self._followups.discard)

    async def _show_quietly(self, job: Job, detail: Message) -> None:
        try:
            await self.messenger.show_status(job, detail)
        except Exception:  # a card is a courtesy: the books are already right
            log.exception("job=%s card not updated", job.id)

    async def _tell_moderators(self, text: Message) -> None:
        """An account-wide problem: every server with work waiting hears of it once."""
        for guild in await self.store.guilds_waiting():
            await self.messenger.alert(guild.alert_channel_id, text)

    # --- internal hooks ----------------------------------------------------------------------

    async def _submitted(self, job: Job) -> None:
        self.poller.wake()
        await self._show(job)

    async def ended(self, job: Job) -> None:
        self._hand_on(job)

    def _hand_on(self, job: Job) -> None:
        """A job ended: its API slot is free and its result (or failure) goes to delivery, which
        owns the status card from here on (it alone moves the job on, so no card goes stale)."""
        self.scheduler.wake()
        self.delivery.enqueue(job)

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.progress_interval)
            for job in await self.store.jobs_in_states(IN_FLIGHT):
                if self.messenger.owns_card(job):
                    await self._show(job)

    async def _show(self, job: Job) -> None:
        """Edit the status card when something a person would notice changed."""
        fresh = await self.store.get_job(job.id)  # never paint an older state over a newer one
        if fresh is None or fresh.status_message_id is None:
            return
        job = fresh
        position = await self.store.queue_position(job) if job.state is JobState.QUEUED else 0
        now = time.time()
        last = self._shown.get(job.id)
        # Same state and place: only the elapsed time moved. Refresh it now and then, not every
        # tick, to stay far inside Discord's per-channel edit limits.
        unchanged = last is not None and (last[0], last[1]) == (job.state, position)
        if unchanged and last is not None and now - last[2] < ELAPSED_REFRESH:
            return
        if job.state not in IN_FLIGHT:
            self._shown.pop(job.id, None)
        else:
            self._shown[job.id] = (job.state, position, now)
        place = say("#%(position)s in the queue", position=position) if position else ""
        detail = join(place, elapsed_text(now - job.created_at))
        try:
            await self.messenger.show_status(job, detail)
        except Exception:  # a status edit is cosmetic: never let it stop the pipeline
            log.exception("job=%s status card update failed", job.id)


async def guarded(name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a loop; if it crashes, log and restart it rather than silently stop serving."""
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Stopped, and an error raised while unwinding replaced the CancelledError
                # (the scheduler puts a job back in the queue, and the database is away):
                # restarting would leave a loop nobody stops (a follower still scheduling).
                log.warning("%s loop failed while stopping: %r", name, exc)
                raise asyncio.CancelledError from None
            if isinstance(exc, StoreUnavailable):  # expected while the database restarts
                log.warning("%s loop: %s; restarting in 1s", name, exc)
            else:
                log.exception("%s loop crashed; restarting in 1s", name)
            await asyncio.sleep(1)
