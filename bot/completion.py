"""Apply what the API says about a job, exactly once, whichever path said it first.

The poller, the webhook receiver, the relay and the CLI all call :func:`apply_api_job`. The
store's compare-and-set transition makes the second report of the same end a no-op.
"""

from __future__ import annotations

import logging
import time

from bot import contract
from bot.doitong import ApiJob
from bot.jobs import IllegalTransition, Job, JobState
from bot.store import Store

log = logging.getLogger(__name__)


async def apply_api_job(store: Store, job: Job, api_job: ApiJob) -> Job | None:
    """Record the end of ``job`` if ``api_job`` reports one; return the updated job, else None.

    None means nothing changed: the job is still running at the API, or another path already
    applied this end (a duplicate webhook, a poll racing a webhook).
    """
    if job.state is not JobState.PROCESSING or not api_job.finished:
        return None
    try:
        if api_job.status == contract.STATUS_COMPLETED:
            if not api_job.url:
                log.warning("job %s: API says completed without a url; waiting for the next report", job.id)
                return None
            updated = await store.transition(
                job.id,
                JobState.COMPLETED,
                expected=JobState.PROCESSING,
                result_url=api_job.url,
                # A webhook carries no creditCost (the contract's payload): keep the create's.
                actual_credits=api_job.credit_cost if api_job.credit_cost is not None else job.actual_credits,
                completed_at=time.time(),
            )
        else:
            updated = await store.transition(
                job.id,
                JobState.FAILED,
                expected=JobState.PROCESSING,
                error=api_job.error or "the API reported the job failed without a reason",
                actual_credits=api_job.credit_cost if api_job.credit_cost is not None else _failed_cost(job),
                completed_at=time.time(),
            )
    except IllegalTransition:
        log.debug("job %s: end already applied", job.id)
        return None
    log.info("job %s %s at the API", job.id, updated.state)
    return updated


def _failed_cost(job: Job) -> int | None:
    """What a failed job costs when the report does not say: nothing, per the contract."""
    return job.actual_credits if contract.FAILED_JOBS_BILLED else 0
