"""ONE polling loop for every job the API is working on.

All due jobs are read in one request (GraphQL aliases, up to ``batch`` per request). The pace
fits the account's budget: reads may use at most ``read_share`` of the plan's requests per
window, so creates keep their room. With webhooks the poller is only a safety net and reads
rarely. A job that outlasts ``job_timeout`` is marked expired.

A job that ended here while the API had it (cancelled, or expired) is still read until the API
ends it, so its pool pays what the account was billed (:func:`bot.jobs.awaits_the_apis_end`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from bot.api.client import ApiJob, DoitongClient, DoitongError
from bot.inbound.completion import api_charge, apply_api_job
from bot.jobs import IllegalTransition, Job, JobHook, JobState, awaits_the_apis_end
from bot.store import Store
from shared import contract

log = logging.getLogger(__name__)

# How long an expired job is still followed after it was sent. The vendor's jobs take minutes;
# one the API has not ended in a day is taken as never billed (its pool is refunded then).
EXPIRED_FOLLOW: Final = 24 * 3600.0


class Poller:
    def __init__(
        self,
        store: Store,
        client: DoitongClient,
        plan: contract.Plan,
        *,
        on_ended: JobHook,
        window: float = contract.RATE_WINDOW_SECONDS,
        job_timeout: float = 900.0,
        webhooks: bool = False,
        read_share: float = 0.5,
        batch: int = 25,
        source: str | None = None,
        on_api_end: Callable[[Job, int], None] | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.on_ended = on_ended
        self.job_timeout = job_timeout
        self.batch = batch
        self.source = source  # only jobs from this face (the bot leaves the CLI's alone)
        # A job ended here (cancelled, expired) ended at the API: its slot is free; the bill.
        self.on_api_end = on_api_end or (lambda job, charged: None)
        self.window = window
        # The shortest gap between two reads that keeps them within their share of the budget.
        self.min_interval = window / max(1.0, plan.requests_per_minute * read_share)
        # With webhooks a read is only a fallback for a lost delivery: a few per window at most.
        self.max_interval = window if webhooks else max(self.min_interval, window / 4)
        self.webhooks = webhooks
        self._wake = asyncio.Event()
        self._next_read: dict[str, float] = {}
        self._interval: dict[str, float] = {}
        self._expected_end: dict[str, float] = {}  # job -> Unix time the API should finish it
        self.seconds_per_5s: float | None = None  # the API's recent job time per 5 s of video
        self.reads = 0

    def wake(self) -> None:
        self._wake.set()

    def set_webhooks(self, arriving: bool) -> None:
        """Switch pace: a safety net while webhooks arrive, the normal pace while they cannot
        (the relay is unreachable); then every job in flight is read soon."""
        if arriving == self.webhooks:
            return
        self.webhooks = arriving
        self.max_interval = self.window if arriving else max(self.min_interval, self.window / 4)
        if not arriving:
            soon = time.monotonic() + self.min_interval
            for job_id, when in self._next_read.items():
                self._interval[job_id] = self.min_interval
                self._next_read[job_id] = min(when, soon)
            self.wake()
        log.info("poller: %s", "safety net (webhooks arrive)" if arriving else "polling (no webhooks)")

    def forget(self, job_id: str) -> None:
        self._next_read.pop(job_id, None)
        self._interval.pop(job_id, None)
        self._expected_end.pop(job_id, None)

    async def run(self) -> None:
        while True:
            delay = await self.poll_once()
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as the
            # event is set (a wake right before Pipeline.stop), and the stop then hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    async def poll_once(self) -> float:
        """Read every due job; return how long to sleep before the next round."""
        jobs = await self.store.jobs_in_states([JobState.PROCESSING], source=self.source)
        # Cancelled here, maybe still running there: read until the API ends them (slots).
        jobs += await self.store.cancelled_at_api(time.time() - self.job_timeout)
        # Expired here, maybe finishing late there: read until the API ends them (their bill).
        jobs += await self.store.expired_at_api(time.time() - EXPIRED_FOLLOW)
        now = time.monotonic()
        due: list[Job] = []
        for job in jobs:
            if self._overdue(job):
                due.append(job)  # read it first: it may have finished while we were away
                continue
            if job.id not in self._next_read:
                # A new job (or every job after a restart): with webhooks, first read only once
                # the webhook had time to arrive; polling, around when jobs like it have been
                # finishing (reading earlier only spends the budget), else after the usual gap.
                self._interval[job.id] = self.max_interval if self.webhooks else self.min_interval
                first = now + self._interval[job.id]
                end = self._expect_end(job)
                if end is not None and not self.webhooks:
                    first = max(first, now + end - time.time() - self.min_interval / 2)
                self._next_read[job.id] = first
            if self._next_read[job.id] <= now:
                due.append(job)
        for start in range(0, len(due), self.batch):
            await self._read(due[start : start + self.batch])
        live = {j.id for j in jobs}
        for job_id in list(self._next_read):
            if job_id not in live:
                self.forget(job_id)
        if not self._next_read:
            return 60.0  # nothing in flight: sleep until woken
        return max(self.min_interval, min(self._next_read.values()) - time.monotonic(), 0.05)

    async def _read(self, jobs: list[Job]) -> None:
        ids = [j.api_job_id for j in jobs if j.api_job_id]
        try:
            self.reads += 1
            reports = await self.client.get_jobs(ids)
        except DoitongError as exc:
            log.warning("status read of %d jobs failed: %s", len(ids), exc)
            for job in jobs:
                self._push_back(job.id)
            return
        for job in jobs:
            report = reports.get(job.api_job_id or "")
            if awaits_the_apis_end(job):
                self._followed_read(job, report)
                if job.id not in self._next_read:
                    # Ended there (billed as the report says), unknown to the API, or overdue
                    # (nothing billed that we can tell).
                    charged = api_charge(job, report)
                    if await self.store.mark_api_ended(job, charged):
                        self.on_api_end(job, charged)
                continue
            if report is None:
                log.warning("job=%s api_job=%s unknown to the API", job.id, job.api_job_id)
            if report is not None:
                self.observe(job, report)
            ended = await apply_api_job(self.store, job, report) if report is not None else None
            if ended is not None:
                self.forget(job.id)
                await self.on_ended(ended)
            elif self._overdue(job):  # read just now and still not finished: give up on it
                await self._expire(job)
            else:
                self._push_back(job.id)

    def _followed_read(self, job: Job, report: ApiJob | None) -> None:
        """A job ended here is followed only for its slot and bill: forgotten once the API
        ended it, does not know it, or it is overdue."""
        if report is None or report.finished or self._overdue(job):
            self.forget(job.id)
        else:
            self._push_back(job.id)

    def _overdue(self, job: Job) -> bool:
        if job.submitted_at is None:
            return False
        wait = EXPIRED_FOLLOW if job.outcome == "expired" else self.job_timeout
        return time.time() - job.submitted_at > wait

    def observe(self, job: Job, report: ApiJob) -> None:
        """Learn how long the API takes from a finished report (a moving average)."""
        if report.status != contract.STATUS_COMPLETED or not report.created_at or not report.completed_at:
            return
        try:
            took = (_instant(report.completed_at) - _instant(report.created_at)).total_seconds()
        except ValueError:
            return
        per_5s = took / max(1.0, job.options.duration / 5)
        if per_5s > 0:
            last = self.seconds_per_5s
            self.seconds_per_5s = per_5s if last is None else 0.8 * last + 0.2 * per_5s

    def _expect_end(self, job: Job) -> float | None:
        if self.seconds_per_5s is None or job.submitted_at is None:
            return None
        end = job.submitted_at + self.seconds_per_5s * max(1.0, job.options.duration / 5)
        self._expected_end[job.id] = end
        return end

    def _push_back(self, job_id: str) -> None:
        """The next read of a job still running comes later each time, up to max_interval;
        but once it is past its expected end, every min_interval (its slot may be idle)."""
        interval = min(self.max_interval, self._interval.get(job_id, self.min_interval) * 1.5)
        end = self._expected_end.get(job_id)
        if end is not None and not self.webhooks:
            until_end = end - time.time()
            soon = max(until_end, self.min_interval)
            interval = self.min_interval if until_end <= 0 else min(interval, soon)
        self._interval[job_id] = interval
        self._next_read[job_id] = time.monotonic() + interval

    async def _expire(self, job: Job) -> None:
        minutes = self.job_timeout / 60
        try:
            ended = await self.store.transition(
                job.id,
                JobState.EXPIRED,
                expected=JobState.PROCESSING,
                error=f"the API did not finish it within {minutes:.0f} minutes",
                completed_at=time.time(),
            )
        except IllegalTransition:
            return
        # Still read, now and then: the API may finish it yet and bill it (its pool pays that).
        self._push_back(job.id)
        log.warning("job=%s expired after %.0fs", job.id, self.job_timeout)
        await self.on_ended(ended)


def _instant(text: str) -> datetime:
    """An ISO 8601 time from the API ("2025-01-01T12:00:00Z")."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
