"""The emulated service behind both transports: creating jobs (idempotency, limits, credits,
the input image, billing), reading them, and running each job's lifecycle in a task.

Create order (after the transport authenticated the key, counted the request and validated the
input): idempotency -> concurrency / daily limit -> credits -> fetch the image -> bill and
create. Between the checks and the billing the create holds a reservation (a job slot and the
credits), so concurrent creates cannot overrun a limit while one downloads its image.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp

from emulator.accounts import Account
from emulator.config import EmulatorConfig
from emulator.faults import Faults
from emulator.images import ImageFetcher, InputImage
from emulator.jobs import CreateRequest, Job, new_job_id, now_utc
from emulator.render import RenderCache, RenderOptions
from emulator.webhooks import WebhookSender
from shared import contract

log = logging.getLogger(__name__)


class JobFailure(Exception):
    """A job ends ``failed`` with this message."""


class JobService:
    def __init__(
        self,
        config: EmulatorConfig,
        *,
        output_dir: Path,
        public_url: str,
        session: aiohttp.ClientSession,
        faults: Faults,
    ) -> None:
        self.config = config
        self.output_dir = output_dir
        self.public_url = public_url.rstrip("/")
        self.faults = faults
        self.accounts: dict[str, Account] = {}
        for acct, label in zip(config.accounts, config.labels(), strict=True):
            self.accounts[acct.key] = Account(config=acct, label=label, time_scale=config.time_scale)
        self.jobs: dict[str, Job] = {}
        self.fetcher = ImageFetcher(session, config.image_timeout)
        self.renders = RenderCache(output_dir / "renders", config.render_workers, config.render_cache_bytes)
        self.webhooks = WebhookSender(
            session,
            attempts=config.webhook_attempts,
            time_scale=config.time_scale,
            timeout=config.webhook_timeout,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lookups -------------------------------------------------------------------------

    def account_for(self, key: str | None) -> Account | None:
        return None if not key else self.accounts.get(key)

    def account_by_key_or_label(self, ident: str) -> Account | None:
        acct = self.accounts.get(ident)
        if acct is not None:
            return acct
        return next((a for a in self.accounts.values() if a.label == ident), None)

    def read(self, account: Account, job_id: str) -> Job | None:
        """A status read: the job if it is this key's, else None."""
        account.counters.status_reads += 1
        job = self.jobs.get(job_id)
        return job if job is not None and job.owner == account.label else None

    def completed_output(self, job_id: str) -> Path | None:
        job = self.jobs.get(job_id)
        if job is None or job.status != contract.STATUS_COMPLETED:
            return None
        path = self.output_dir / f"{job_id}.mp4"
        return path if path.is_file() else None

    # --- create --------------------------------------------------------------------------

    def _estimate(self, request: CreateRequest) -> float:
        cfg = self.config
        return (cfg.queue_seconds + cfg.processing_seconds * request.duration / 5) * cfg.time_scale

    async def create(self, account: Account, request: CreateRequest, idempotency_key: str | None) -> Job:
        if not idempotency_key:
            return await self._create_new(account, request, None)
        async with account.lock:
            job_id = account.idempotency.get(idempotency_key)
            if job_id is not None:
                account.counters.idempotent_replays += 1
                return self.jobs[job_id]
            pending = account.in_flight.get(idempotency_key)
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                account.in_flight[idempotency_key] = pending
                first = True
            else:
                first = False
        if not first:
            # A concurrent duplicate: answer with whatever the first request gets.
            job_id = await asyncio.shield(pending)
            account.counters.idempotent_replays += 1
            return self.jobs[job_id]
        try:
            job = await self._create_new(account, request, idempotency_key)
        except asyncio.CancelledError:
            account.in_flight.pop(idempotency_key, None)
            pending.cancel()
            raise
        except Exception as exc:
            account.in_flight.pop(idempotency_key, None)
            pending.set_exception(exc)
            pending.exception()  # retrieved: duplicates, if any, re-raise it themselves
            raise
        # No await from here on: the map update is atomic on the event loop.
        account.idempotency[idempotency_key] = job.id
        account.in_flight.pop(idempotency_key, None)
        pending.set_result(job.id)
        return job

    async def _create_new(self, account: Account, request: CreateRequest, idempotency_key: str | None) -> Job:
        now = time.monotonic()
        account.check_capacity(now)
        cost = request.cost
        account.check_credits(cost)
        reservation = account.reserve(cost, now + self._estimate(request))
        try:
            image = await self.fetcher.fetch(request.image_ref)
        except BaseException:
            account.release(reservation)
            raise
        if account.credits < cost:  # the balance was lowered (set_credits) meanwhile
            account.release(reservation)
            account.check_credits(cost)  # raises: the balance no longer covers the job
        job_faults = self.faults.next_job()
        job = Job(
            id=new_job_id(),
            owner=account.label,
            request=request,
            cost=cost,
            created_at=now_utc(),
            idempotency_key=idempotency_key,
            fail=job_faults.fail,
            drop_webhook=job_faults.drop_webhook,
        )
        account.bill(reservation, job.id, time.monotonic())
        self.jobs[job.id] = job
        task = asyncio.create_task(self._run(job, account, image), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("job %s created for %s (%s, %d credits)", job.id, account.label, request.version, cost)
        return job

    # --- lifecycle -----------------------------------------------------------------------

    async def _run(self, job: Job, account: Account, image: InputImage) -> None:
        cfg = self.config
        scale = cfg.time_scale
        try:
            await asyncio.sleep(cfg.queue_seconds * scale)
            job.status = contract.STATUS_PROCESSING
            started = time.monotonic()
            target = cfg.processing_seconds * (job.request.duration / 5) * scale
            if job.fail:
                await asyncio.sleep(target / 2)
                raise JobFailure(
                    "Generation failed: the model could not animate this image (emulated failure)"
                )
            options = RenderOptions(
                duration=job.request.duration,
                aspect_ratio=job.request.aspect_ratio,
                motion=job.request.motion,
                fps=cfg.fps,
                short_side=cfg.video_height,
                crf=cfg.crf,
            )
            result = await self.renders.render(
                image.image, image.sha256, options, self.output_dir / f"{job.id}.mp4"
            )
            del image
            remaining = target - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)
            job.width, job.height = result.info.width, result.info.height
            job.url = f"{self.public_url}{contract.OUTPUTS_PATH.format(id=job.id)}"
            job.completed_at = now_utc()
            job.status = contract.STATUS_COMPLETED
            account.finish(job.id)
            log.info("job %s completed", job.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = (
                str(exc) if isinstance(exc, JobFailure) else f"Generation failed: internal error ({exc})"
            )
            if not isinstance(exc, JobFailure):
                log.exception("job %s failed", job.id)
            job.error = message
            job.completed_at = now_utc()
            job.status = contract.STATUS_FAILED
            account.finish(job.id, refund=0 if contract.FAILED_JOBS_BILLED else job.cost)
        await self._notify(job, account)

    async def _notify(self, job: Job, account: Account) -> None:
        url = job.request.webhook_url
        if not url:
            return
        if job.drop_webhook:
            self.webhooks.stats.dropped += 1
            log.info("job %s: webhook dropped (fault)", job.id)
            return
        await self.webhooks.deliver(
            url, job.webhook_payload(), account.config.webhook_secret, f"evt_{job.id}_{job.status}"
        )

    # --- admin ---------------------------------------------------------------------------

    def set_credits(self, ident: str, credits: int) -> Account:
        account = self.account_by_key_or_label(ident)
        if account is None:
            raise KeyError("unknown account")
        account.credits = credits
        return account

    def state(self) -> dict[str, Any]:
        now = time.monotonic()
        accounts: dict[str, Any] = {}
        for acct in self.accounts.values():
            limits = acct.limits
            accounts[acct.label] = {
                "plan": acct.config.plan,
                "credits": acct.credits,
                "reserved_credits": acct.reserved_credits,
                "jobs_created": acct.counters.jobs_created,
                "idempotent_replays": acct.counters.idempotent_replays,
                "requests": acct.counters.requests,
                "rate_limited": acct.counters.rate_limited,
                "status_reads": acct.counters.status_reads,
                "active_jobs": sum(1 for k in acct.active if not k.startswith("reservation-")),
                "jobs_today": acct.jobs_today(now),
                "limits": {
                    "requests_per_minute": limits.requests_per_minute,
                    "concurrent_jobs": limits.concurrent_jobs,
                    "jobs_per_day": limits.jobs_per_day,
                },
            }
        return {
            "accounts": accounts,
            "jobs": [
                {
                    "id": job.id,
                    "status": job.status,
                    "label": job.owner,
                    "idempotency_key": job.idempotency_key,
                    "creditCost": job.credit_cost,
                }
                for job in self.jobs.values()
            ],
            "webhooks": self.webhooks.stats.as_dict(),
            "renders": {
                "rendered": self.renders.renders,
                "cache_hits": self.renders.hits,
                "cache_bytes": self.renders.bytes,
                "evicted": self.renders.evictions,
            },
            "faults_pending": self.faults.pending(),
        }

    # --- shutdown ------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until every job and webhook task has ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.renders.close()
