"""Admission: a person's quota checked and the job recorded in ONE transaction.

Counting is derived from the job rows themselves, so it is exact and survives restarts, and
because the check and the insert share an IMMEDIATE transaction, two commands sent at the
same moment cannot both pass a limit of one.

Windows: "per minute" is the last 60 s, "concurrent" is jobs not yet ended, "per day" is a
rolling 24 h. Jobs that ended unserved (failed, cancelled, expired) are given back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot import contract
from bot.jobs import Job
from bot.store import NewJob, Store


@dataclass(frozen=True, slots=True)
class QuotaWindows:
    """Window lengths in seconds; tests shrink them (QUOTA_TIME_SCALE)."""

    minute: float = contract.RATE_WINDOW_SECONDS
    day: float = contract.DAY_SECONDS

    @classmethod
    def scaled(cls, scale: float) -> QuotaWindows:
        return cls(contract.RATE_WINDOW_SECONDS * scale, contract.DAY_SECONDS * scale)


class QuotaExceeded(Exception):
    """A limit of the person's plan is reached; says which and when it frees."""

    def __init__(self, limit: str, allowed: int, plan: str, frees_at: float | None) -> None:
        self.limit = limit  # "concurrent", "per_minute" or "per_day"
        self.allowed = allowed
        self.plan = plan
        self.frees_at = frees_at  # Unix time; None = when a running job ends
        super().__init__(self.describe())

    def describe(self) -> str:
        plan = self.plan.capitalize()
        if self.limit == "concurrent":
            running = "1 animation" if self.allowed == 1 else f"{self.allowed} animations"
            return f"You already have {running} running, the most the {plan} plan allows at once."
        if self.limit == "per_minute":
            return f"You have started {self.allowed} animations in the last minute, the {plan} plan's limit."
        return f"You have started {self.allowed} animations in the last 24 hours, the {plan} plan's limit."


async def admit(
    store: Store,
    new: NewJob,
    plan: contract.Plan,
    *,
    windows: QuotaWindows | None = None,
    now: float | None = None,
) -> Job:
    """Record ``new`` if its requester is within ``plan``; raise QuotaExceeded otherwise."""
    if new.user_id is None:  # the CLI: the operator's own account, no per-person quota
        return await store.insert_job(new, now=now)
    windows = windows or QuotaWindows()
    now = time.time() if now is None else now
    minute_since, day_since = now - windows.minute, now - windows.day
    async with store.transaction():
        usage = await store.usage(new.user_id, minute_since, day_since)
        if usage.active >= plan.concurrent_jobs:
            raise QuotaExceeded("concurrent", plan.concurrent_jobs, plan.name, None)
        if usage.in_minute >= plan.requests_per_minute:
            oldest = await store.nth_counted_since(
                new.user_id, minute_since, usage.in_minute - plan.requests_per_minute
            )
            frees = oldest + windows.minute if oldest is not None else None
            raise QuotaExceeded("per_minute", plan.requests_per_minute, plan.name, frees)
        if plan.jobs_per_day is not None and usage.in_day >= plan.jobs_per_day:
            oldest = await store.nth_counted_since(new.user_id, day_since, usage.in_day - plan.jobs_per_day)
            frees = oldest + windows.day if oldest is not None else None
            raise QuotaExceeded("per_day", plan.jobs_per_day, plan.name, frees)
        return await store.insert_job(new, now=now)
