"""Per-key state: plan limits, the request window, running jobs, the day's jobs, credits,
idempotency keys and counters.

All times here are ``time.monotonic()`` seconds; the caller turns them into Unix times for the
headers. Everything runs on the event loop, so only the create path (which awaits an image
download between its checks and its billing) needs the per-account lock.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field

from emulator.config import AccountConfig
from emulator.errors import ApiError
from shared import contract


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of counting one request against a window."""

    allowed: bool
    limit: int
    remaining: int
    reset_in: float  # seconds until the window resets


class RateWindow:
    """A fixed window per key: it opens at the first request after the previous one expired
    and lets ``limit`` requests through until it closes ``length`` seconds later."""

    def __init__(self, limit: int, length: float) -> None:
        self.limit = limit
        self.length = length
        self._start: float | None = None
        self._count = 0

    def _roll(self, now: float) -> None:
        if self._start is None or now >= self._start + self.length:
            self._start = now
            self._count = 0

    def hit(self, now: float) -> RateDecision:
        """Count one request (a refused one too: it still arrived)."""
        self._roll(now)
        self._count += 1
        return self._decision(now)

    def peek(self, now: float) -> RateDecision:
        """The window's state without counting anything."""
        if self._start is None or now >= self._start + self.length:
            return RateDecision(True, self.limit, self.limit, self.length)
        return self._decision(now)

    def exhaust(self, now: float) -> RateDecision:
        """The state a spurious 429 reports: nothing left until the window resets."""
        decision = self.peek(now)
        return RateDecision(False, self.limit, 0, decision.reset_in)

    def _decision(self, now: float) -> RateDecision:
        assert self._start is not None
        return RateDecision(
            allowed=self._count <= self.limit,
            limit=self.limit,
            remaining=max(0, self.limit - self._count),
            reset_in=max(0.0, self._start + self.length - now),
        )


@dataclass(slots=True)
class Counters:
    jobs_created: int = 0  # billed creates
    idempotent_replays: int = 0
    requests: int = 0
    rate_limited: int = 0  # 429 answers, whatever the reason
    status_reads: int = 0


@dataclass(slots=True)
class Reservation:
    """What a create holds while it downloads the image: a job slot and the credits."""

    token: str
    cost: int


@dataclass(slots=True)
class Account:
    """The live state of one API key."""

    config: AccountConfig
    label: str
    time_scale: float
    credits: int = 0
    counters: Counters = field(default_factory=Counters)
    window: RateWindow = field(init=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # job id (or reservation token) -> estimated monotonic end, for queued+processing jobs
    active: dict[str, float] = field(default_factory=dict)
    day_creates: deque[float] = field(default_factory=deque)
    reserved_credits: int = 0
    idempotency: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> job id
    in_flight: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.credits = self.config.credits
        self.window = RateWindow(
            self.limits.requests_per_minute, contract.RATE_WINDOW_SECONDS * self.time_scale
        )

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def limits(self) -> contract.Plan:
        return self.config.limits

    @property
    def day_length(self) -> float:
        return contract.DAY_SECONDS * self.time_scale

    @property
    def available_credits(self) -> int:
        return self.credits - self.reserved_credits

    def check_capacity(self, now: float) -> None:
        """Raise RATE_LIMITED if a new job would pass the concurrency or the daily limit."""
        limits = self.limits
        if len(self.active) >= limits.concurrent_jobs:
            soonest = min(self.active.values())
            raise ApiError(
                contract.CODE_RATE_LIMITED,
                f"Concurrent job limit reached: {len(self.active)} of {limits.concurrent_jobs} jobs "
                f"queued or processing on the {limits.name} plan; wait for one to finish",
                retry_after=max(soonest - now, 0.0) + 0.001,
                limit="concurrency",
            )
        if limits.jobs_per_day is not None:
            self._prune_day(now)
            if len(self.day_creates) >= limits.jobs_per_day:
                oldest = self.day_creates[0]
                raise ApiError(
                    contract.CODE_RATE_LIMITED,
                    f"Daily job limit reached: {limits.jobs_per_day} jobs in the last 24 hours "
                    f"on the {limits.name} plan",
                    retry_after=max(oldest + self.day_length - now, 0.0) + 0.001,
                    limit="daily",
                )

    def check_credits(self, cost: int) -> None:
        """Raise INSUFFICIENT_CREDITS when the balance (less what is held) is below ``cost``."""
        available = self.available_credits
        if available < cost:
            raise ApiError(
                contract.CODE_INSUFFICIENT_CREDITS,
                "Insufficient credits for this operation",
                creditsRequired=cost,
                creditsAvailable=max(available, 0),
            )

    def reserve(self, cost: int, estimated_end: float) -> Reservation:
        token = f"reservation-{next(self._tokens)}"
        self.active[token] = estimated_end
        self.reserved_credits += cost
        return Reservation(token, cost)

    def release(self, reservation: Reservation) -> None:
        self.active.pop(reservation.token, None)
        self.reserved_credits -= reservation.cost

    def bill(self, reservation: Reservation, job_id: str, now: float) -> None:
        """Turn a reservation into a running, billed job."""
        estimated_end = self.active.pop(reservation.token, now)
        self.reserved_credits -= reservation.cost
        self.credits -= reservation.cost
        self.active[job_id] = estimated_end
        self.day_creates.append(now)
        self.counters.jobs_created += 1

    def finish(self, job_id: str, refund: int = 0) -> None:
        """A job left queued/processing; ``refund`` credits go back to the balance."""
        self.active.pop(job_id, None)
        self.credits += refund

    def _prune_day(self, now: float) -> None:
        while self.day_creates and self.day_creates[0] <= now - self.day_length:
            self.day_creates.popleft()

    def jobs_today(self, now: float) -> int:
        self._prune_day(now)
        return len(self.day_creates)
