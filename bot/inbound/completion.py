"""Apply what the API says about a job, exactly once, whichever path said it first.

The poller, the webhook receiver, the relay and the CLI all end jobs through here. The store's
compare-and-set transition makes the second report of the same end a no-op.

Webhook reports arrive many at a time; :class:`ReportWriter` applies those that arrive together
in one transaction (group commit): one hand-off to the database thread and one commit for the
group instead of several of each per report.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bot.api.client import ApiJob
from bot.jobs import IllegalTransition, Job, JobState, awaits_the_apis_end
from bot.store import Store, Tx, jobs
from shared import contract

log = logging.getLogger(__name__)


def end_of(job: Job, api_job: ApiJob) -> tuple[JobState, dict[str, Any]] | None:
    """The move ``api_job`` calls for on ``job`` (target and fields), or None when none does."""
    if job.state is not JobState.PROCESSING or not api_job.finished:
        return None
    if api_job.status == contract.STATUS_COMPLETED:
        if not api_job.url:
            log.warning("job %s: API says completed without a url; waiting for the next report", job.id)
            return None
        return JobState.COMPLETED, {
            "result_url": api_job.url,
            # A webhook carries no creditCost (the contract's payload): keep the create's.
            "actual_credits": api_job.credit_cost if api_job.credit_cost is not None else job.actual_credits,
            "completed_at": time.time(),
        }
    return JobState.FAILED, {
        "error": api_job.error or "the API reported the job failed without a reason",
        "actual_credits": api_job.credit_cost if api_job.credit_cost is not None else _failed_cost(job),
        "completed_at": time.time(),
    }


def record_end(tx: Tx, job: Job, api_job: ApiJob) -> Job | None:
    """Record the end of ``job`` if ``api_job`` reports one; return the updated job, else None.

    None means nothing changed: the job is still running at the API, or another path already
    applied this end (a duplicate webhook, a poll racing a webhook). Inside a transaction: an
    end settles the pool with it.
    """
    move = end_of(job, api_job)
    if move is None:
        return None
    try:
        updated = jobs.transition(tx, job.id, move[0], JobState.PROCESSING, move[1])
    except IllegalTransition:
        log.debug("job %s: end already applied", job.id)
        return None
    log.info("job %s %s at the API", job.id, updated.state)
    return updated


async def apply_api_job(store: Store, job: Job, api_job: ApiJob) -> Job | None:
    """:func:`record_end` in a transaction of its own (the poller and the CLI: one job at a time)."""
    if end_of(job, api_job) is None:  # nothing to write: no trip to the database
        return None
    return await store.atomic(functools.partial(record_end, job=job, api_job=api_job))


@dataclass(frozen=True, slots=True)
class Applied:
    """What one report did."""

    job: Job | None  # the job as it was before; None: no job has this API id (yet)
    ended: Job | None = None  # the end this report recorded; None if it recorded none


def apply_reports(reports: Sequence[ApiJob], tx: Tx) -> list[Applied]:
    """Apply reports inside one transaction, set-based: one read for the group's jobs, then
    their ends and pool settlements together (:func:`bot.store.jobs.end_many`). A report of a
    job that ended here (cancelled, expired) only notes that the API has ended it: its slot at the
    API is free, and its pool pays what the API billed."""
    known = jobs.by_api_ids(tx, {report.id for report in reports})
    applied: list[Applied] = []
    moves: list[tuple[Job, JobState, dict[str, Any]]] = []
    movers: list[int] = []  # where in ``applied`` each move's result goes
    moving: set[str] = set()  # a second report of the same end in the group changes nothing
    for api_job in reports:
        job = known.get(api_job.id)
        move = end_of(job, api_job) if job is not None and job.id not in moving else None
        if job is not None and awaits_the_apis_end(job) and api_job.finished:
            jobs.mark_api_ended(tx, job, api_charge(job, api_job))
        if job is not None and move is not None:
            moving.add(job.id)
            moves.append((job, *move))
            movers.append(len(applied))
        applied.append(Applied(job))
    for at, ended in zip(movers, jobs.end_many(tx, moves), strict=True):
        applied[at] = Applied(applied[at].job, ended)
        if ended is not None:
            log.info("job %s %s at the API", ended.id, ended.state)
    return applied


GATHER_TURNS: Final = 8  # event-loop turns a group waits for more reports, while more arrive


class ReportWriter:
    """Applies reports in groups: those that arrive while a group is being written form the next.

    A lone report is written at once (no timer, no added wait); under a burst each group costs
    one hand-off and one commit. ``on_applied`` runs for each report once its group has
    committed, whether or not its sender is still waiting, so no recorded end is left without
    its follow-up (delivery) when a sender hangs up.
    """

    GROUP: Final = 64  # reports per transaction: a bound on how long one commit holds the lock

    def __init__(self, store: Store, on_applied: Callable[[ApiJob, Applied], None]) -> None:
        self._store = store
        self._on_applied = on_applied
        self._pending: list[tuple[ApiJob, asyncio.Future[Applied]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, api_job: ApiJob) -> Applied:
        future: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._pending.append((api_job, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="report-writer")
        return await future

    async def _write_all(self) -> None:
        while self._pending:
            await self._gather()
            group, self._pending = self._pending[: self.GROUP], self._pending[self.GROUP :]
            try:
                results = await self._write([report for report, _ in group])
            except asyncio.CancelledError:
                for _, future in group + self._pending:
                    future.cancel()
                raise
            for (report, future), result in zip(group, results, strict=True):
                if isinstance(result, Exception):
                    if not future.done():
                        future.set_exception(result)
                    continue
                try:
                    self._on_applied(report, result)
                except Exception:
                    log.exception("follow-up of the report for api job %s failed", report.id)
                if not future.done():
                    future.set_result(result)

    async def _gather(self) -> None:
        """Let reports that are arriving join the group: a burst's requests land a few
        event-loop turns apart, and without this most groups held one or two reports (6 on
        average at 32 senders, measured). Turns, not a timer: the senders wait on the answer,
        so every millisecond of waiting is a millisecond less throughput (a 2 ms delay,
        measured, cut it by a third)."""
        for _ in range(GATHER_TURNS):
            before = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == before or len(self._pending) >= self.GROUP:
                return

    async def _write(self, reports: list[ApiJob]) -> list[Applied | Exception]:
        try:
            return list(await self._store.atomic(functools.partial(apply_reports, reports)))
        except Exception as error:
            if len(reports) == 1:
                return [error]
        # One bad report must not fail the others of its group: write them one by one.
        results: list[Applied | Exception] = []
        for report in reports:
            results.extend(await self._write([report]))
        return results


def api_charge(job: Job, api_job: ApiJob | None) -> int:
    """What the API billed for a job cancelled here once it ended there: its cost if it
    completed, a failed job's (nothing, per the contract), nothing if the API never knew it."""
    if api_job is None or not api_job.finished:
        return 0
    if api_job.status == contract.STATUS_COMPLETED:
        if api_job.credit_cost is not None:
            return api_job.credit_cost
        return job.actual_credits if job.actual_credits is not None else job.estimated_credits
    cost = api_job.credit_cost if api_job.credit_cost is not None else _failed_cost(job)
    return cost or 0


def _failed_cost(job: Job) -> int | None:
    """What a failed job costs when the report does not say: nothing, per the contract."""
    return job.actual_credits if contract.FAILED_JOBS_BILLED else 0
