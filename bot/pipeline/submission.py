"""Hand one recorded job to the API, safely across retries and restarts.

The job is marked ``submitting`` before the call, so a crash mid-call leaves a row that the
next start resubmits with the same stored idempotency key: the API answers with the job it
already started, never a second (billed) one.
"""

from __future__ import annotations

import contextlib
import logging
import time

from bot.api.client import BadRequestError, CreateRequest, DoitongClient
from bot.inbound.completion import apply_api_job
from bot.jobs import IllegalTransition, Job, JobState
from bot.media.attachment_url import data_uri, expired
from bot.store import Store

log = logging.getLogger(__name__)


async def image_url_for(store: Store, job: Job) -> str:
    """What the API is given to fetch the picture: its URL, or, when that Discord link has
    expired while the job waited (or it is an Animate again of an old card), the kept picture
    as a ``data:`` URI. A job whose link expired and whose picture is no longer kept is sent
    with the link, and the API's refusal fails it with the reason."""
    frame = job.image_origin == "frame"  # a frame the bot cut: only its kept copy exists
    if job.image_sha256 is None or not (frame or expired(job.image_ref, time.time())):
        return job.image_ref
    picture = await store.picture(job.image_sha256)
    if picture is None:
        log.warning("job %s: its picture's link expired and the picture is no longer kept", job.id)
        return job.image_ref
    return data_uri(picture.data, picture.mime)


async def submit(
    store: Store, client: DoitongClient, job: Job, *, image_url: str, webhook_url: str | None = None,
    fence: int | None = None,
) -> Job:  # fmt: skip
    """Create ``job`` at the API and record the outcome.

    ``fence``: the leader's term; the claim of a queued job then raises
    :class:`~bot.store.NotLeader` and changes nothing once another process leads.

    A refused input (400) fails the job for good. Any other error puts the job back in
    ``queued`` and is raised, so the caller decides: wait for the rate-limit reset, pause on
    402, or give up (the CLI marks it failed with the reason).
    """
    if job.state is JobState.QUEUED:
        job = await store.transition(job.id, JobState.SUBMITTING, expected=JobState.QUEUED, fence=fence)
    elif job.state is not JobState.SUBMITTING:
        raise ValueError(f"job {job.id} is {job.state}, not waiting to be submitted")
    opts = job.options
    request = CreateRequest(
        image_url=image_url,
        prompt=opts.prompt,
        duration=opts.duration,
        aspect_ratio=opts.aspect_ratio,
        motion=opts.motion,
        version=opts.version,
        webhook_url=webhook_url,
    )
    try:
        api_job = await client.create_job(request, idempotency_key=job.idempotency_key)
    except BadRequestError as exc:
        log.info("job %s refused by the API: %s", job.id, exc.message)
        return await store.transition(
            job.id, JobState.FAILED, expected=JobState.SUBMITTING, error=exc.message, completed_at=time.time()
        )
    except BaseException:
        # Back in the queue for a later try, unless it moved on meanwhile (cancelled).
        with contextlib.suppress(IllegalTransition):
            await store.transition(job.id, JobState.QUEUED, expected=JobState.SUBMITTING)
        raise
    job = await store.transition(
        job.id,
        JobState.PROCESSING,
        expected=JobState.SUBMITTING,
        api_job_id=api_job.id,
        submitted_at=time.time(),
        actual_credits=api_job.credit_cost,  # what the API charged at creation
    )
    log.info("job %s submitted as api job %s", job.id, api_job.id)
    # An idempotent replay may already report the end: apply it now rather than on the next read.
    return await apply_api_job(store, job, api_job) or job
