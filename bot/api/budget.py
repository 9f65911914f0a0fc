"""The account's request budget, shared by everything that calls the API.

Creates and status reads count alike against the plan's requests per minute. Each call
takes a permit first; permits are handed out so that no more than the plan's number go out in
any window, and the API's own ``X-RateLimit-*`` answer (when it says nothing is left) pauses
everyone until its reset. Written by hand: the window must follow the server's headers, which
no general-purpose limiter library does.
"""

from __future__ import annotations

import asyncio
import collections
import time

from bot.api.client import RateLimit


class RequestBudget:
    def __init__(self, requests_per_window: int, window: float) -> None:
        self.limit = requests_per_window
        self.window = window
        self._sent: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()
        self._blocked_until = 0.0
        self.waited = 0.0  # seconds spent waiting for permits, for the benchmarks

    async def acquire(self) -> None:
        """Wait until one more request fits in the window, then count it."""
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                wait = self._blocked_until - now
                if wait <= 0 and len(self._sent) >= self.limit:
                    wait = self._sent[0] + self.window - now
                if wait <= 0:
                    self._sent.append(now)
                    return
                self.waited += wait
                await asyncio.sleep(wait)

    def in_use(self) -> int:
        """Requests sent in the current window (for /metrics)."""
        now = time.monotonic()
        return sum(1 for t in self._sent if t > now - self.window)

    def available(self) -> int:
        blocked = self._blocked_until > time.monotonic()
        return 0 if blocked else max(0, self.limit - self.in_use())

    def observe(self, rate: RateLimit) -> None:
        """Follow the server: when it says nothing is left, hold every permit until its reset."""
        if rate.remaining is not None and rate.remaining <= 0 and rate.reset_at is not None:
            self.block_until_wall(rate.reset_at)

    def block_until_wall(self, unix_time: float) -> None:
        # Never longer than one window: a reset far away (a clock skew, a daily cap) must not
        # freeze status reads; a real refusal comes back as a 429 with its own wait.
        wait = min(self.window, max(0.0, unix_time - time.time()))
        self._blocked_until = max(self._blocked_until, time.monotonic() + wait)
