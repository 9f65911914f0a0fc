"""The account-wide scheduler: hands queued jobs to the API as the account's slots free.

The bot is ONE API account. Jobs beyond the account's concurrency wait in the jobs table
(state ``queued``, so the queue survives a restart) and are taken oldest first. Every create
passes through the shared request budget (the client's hook). When the API still refuses
(429, 5xx, unreachable, 401/402), submitting pauses and resumes on its own; the job stays
queued with its idempotency key. A pause only the operator can end (credits, key) is also
written to the store, so ``/pool resume`` in any process can lift it: the moderator's
transaction clears it and wakes the leader, and a scheduler woken while paused looks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.api.client import (
    APIUnreachableError,
    AuthenticationError,
    DoitongClient,
    DoitongError,
    InsufficientCreditsError,
    RateLimitedError,
)
from bot.i18n import Message, Text, say
from bot.jobs import Job, JobHook, JobState
from bot.pipeline.submission import image_url_for, submit
from bot.store import NotLeader, Store
from shared import contract

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        store: Store,
        client: DoitongClient,
        plan: contract.Plan,
        *,
        webhook_url: str | None,
        on_submitted: JobHook,
        on_ended: JobHook,
        idle_check: float = 5.0,
        source: str | None = None,
        on_paused: Callable[[Message], Awaitable[None]] | None = None,
        operator_pause: float = contract.RATE_WINDOW_SECONDS,
        job_timeout: float = 900.0,
        fence: Callable[[], int | None] | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.plan = plan
        self.webhook_url = webhook_url
        self.on_submitted = on_submitted
        self.on_ended = on_ended
        self.idle_check = idle_check
        self.source = source  # only jobs from this face (the bot leaves the CLI's alone)
        self.on_paused = on_paused or _nobody
        # After a refusal only the operator can fix (key, credits): probe again this much later.
        self.operator_pause = operator_pause
        self.job_timeout = job_timeout  # a cancelled job holds its API slot at most this long
        # The leader's term for each claim (raises NotLeader once it is over); None: no fence.
        self.fence = fence or _unfenced
        self._wake = asyncio.Event()
        self.paused_until = 0.0  # Unix time
        self.pause_reason: str | None = None
        self._backoff = 1.0
        self._last_served: dict[int | None, float] = {}  # person -> when their last job went out
        self._operator_told = False
        self._pause_stored = False  # a pause is written in the store (see bot.store.pause)

    def wake(self) -> None:
        self._wake.set()

    def resume(self) -> None:
        """Lift a pause now (a moderator's /pool resume after topping up the account)."""
        self._lift()
        self.wake()

    def _lift(self) -> None:
        self.paused_until = 0.0
        self.pause_reason = None

    async def run(self) -> None:
        while True:
            pause = self.paused_until - time.time()
            timeout = pause if pause > 0 else self.idle_check
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as
            # the event is set (a wake during shutdown), and the stop then hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            if self.paused_until > time.time() and not await self._lifted_elsewhere():
                continue  # woken by new work while paused: it waits with the rest
            await self.submit_ready()

    async def _lifted_elsewhere(self) -> bool:
        """Whether a /pool resume (in this process or another) cleared the stored pause."""
        if not self._pause_stored or await self.store.pause_reason() is not None:
            return False
        self._pause_stored = False
        self._lift()
        log.warning("submitting resumed by a moderator")
        return True

    async def submit_ready(self) -> None:
        """Submit as many waiting jobs as the account has free slots.

        Run by each leader at its start, too: jobs a dead leader left ``submitting`` are sent
        again with their stored keys, which the API answers with the job it already started."""
        # Jobs caught mid-call by a crash go first: their key makes the resubmission safe.
        pending = await self.store.jobs_in_states([JobState.SUBMITTING], source=self.source)
        # Every face's running jobs use the account's slots, the CLI's included.
        busy = await self.store.count_in_states([JobState.PROCESSING])
        # Jobs cancelled here but still running at the API hold their slots until it ends them.
        busy += await self.store.count_cancelled_at_api(time.time() - self.job_timeout)
        free = self.plan.concurrent_jobs - busy - len(pending)
        if free > 0:
            queued = await self.store.jobs_in_states([JobState.QUEUED], source=self.source)
            pending += fair_order(queued, self._last_served)[:free]
        for job in pending:
            if not await self._submit(job):
                return

    async def _submit(self, job: Job) -> bool:
        """Submit one job; False when submitting must pause (or stop: no longer the leader)."""
        try:
            image_url = await image_url_for(self.store, job)
            job = await submit(
                self.store, self.client, job, image_url=image_url, webhook_url=self.webhook_url,
                fence=self.fence(),
            )  # fmt: skip
        except NotLeader as exc:  # a freeze outlived the lease; the leader loop stops us next
            log.warning("not submitting: %s", exc)
            return False
        except RateLimitedError as exc:
            self._pause(exc.retry_after or self._next_backoff(), "rate limited by the API")
            return False
        except (AuthenticationError, InsufficientCreditsError) as exc:
            # Only the operator can fix these. The queue stays; submitting resumes by itself
            # when a later probe (the next try, operator_pause from now) succeeds, or at once
            # on resume(). Moderators hear of it once, not once per job.
            log.error("submitting paused: %s (operator action needed)", exc)
            self._pause(self.operator_pause, str(exc))
            await self.store.record_pause(str(exc))
            self._pause_stored = True
            if not self._operator_told:
                self._operator_told = True
                await self.on_paused(_operator_text(exc))
            return False
        except (APIUnreachableError, DoitongError) as exc:
            self._pause(self._next_backoff(), f"API error: {exc}")
            return False
        self._backoff = 1.0
        self._operator_told = False
        self.pause_reason = None
        if self._pause_stored:  # the operator fixed it and a probe got through
            self._pause_stored = False
            await self.store.clear_pause()
        self._last_served[job.user_id] = time.monotonic()
        if job.state is JobState.PROCESSING:
            await self.on_submitted(job)
        else:  # refused for good (400) or already ended on an idempotent replay
            await self.on_ended(job)
        return True

    def _pause(self, seconds: float, reason: str) -> None:
        self.paused_until = time.time() + seconds
        self.pause_reason = reason
        log.warning("submitting paused for %.1fs: %s", seconds, reason)

    def _next_backoff(self) -> float:
        delay, self._backoff = self._backoff, min(self._backoff * 2, self.operator_pause)
        return delay


def fair_order(queued: list[Job], last_served: dict[int | None, float]) -> list[Job]:
    """Round-robin across people: each person's oldest job in turn, the least recently served
    person first, so one heavy user cannot starve the others. Each person's own jobs keep
    their order."""
    by_person: dict[int | None, list[Job]] = {}
    for job in queued:  # oldest first, as the store returns them
        by_person.setdefault(job.user_id, []).append(job)
    people = sorted(by_person, key=lambda p: (last_served.get(p, float("-inf")), by_person[p][0].created_at))
    order: list[Job] = []
    for turn in range(max((len(jobs) for jobs in by_person.values()), default=0)):
        order.extend(by_person[p][turn] for p in people if turn < len(by_person[p]))
    return order


async def _nobody(text: Message) -> None:
    return None


def _unfenced() -> int | None:
    return None


def _operator_text(exc: DoitongError) -> Text:
    """What moderators read in their alert channel (in the server's language)."""
    if isinstance(exc, InsufficientCreditsError):
        if exc.credits_required is not None:
            return say(
                "⚠️ The bot's API account is out of credits (needs %(needs)s, the account has %(has)s). "
                "Animations are queued, not lost; they resume by themselves once the account is topped "
                "up, or at once with `/pool resume`.",
                needs=exc.credits_required,
                has=exc.credits_available if exc.credits_available is not None else "?",
            )
        return say(
            "⚠️ The bot's API account is out of credits. Animations are queued, not lost; they resume "
            "by themselves once the account is topped up, or at once with `/pool resume`."
        )
    return say(
        "⚠️ The API refused the bot's key. Animations are queued; the bot operator must fix DOITONG_API_KEY."
    )
