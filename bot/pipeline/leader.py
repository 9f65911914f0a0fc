"""The leader's loops: started while this process leads, stopped the moment it does not.

Several processes may share one PostgreSQL database; each serves its own shards (interactions,
admission, cancel, moderation, webhooks, delivery), and ONE of them, the leader, also runs what
spends the API account's budget or must run once: the scheduler, the poller (and the expiry
sweeps inside them), the relay subscriber. :class:`LeaderLoops` drives the store's
:class:`~bot.store.Leadership`: a tick about every second (a follower campaigns, the leader
renews its lease); between ticks the leader hears followers' wake-ups (a job queued, a slot
freed) and passes them on. Leader-only writes are also fenced by the leader's term in the
store, for a leader that learns of its loss only after its loops ran on (a freeze).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.store import Leadership

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between a follower's campaigns and the leader's renewals


class LeaderLoops:
    def __init__(
        self,
        leadership: Leadership,
        start: Callable[[], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        *,
        on_notify: Callable[[], None],
        tick: float = TICK,
    ) -> None:
        self.leadership = leadership
        self._start = start
        self._stop = stop
        self._on_notify = on_notify
        self._tick = tick
        self.leading = False  # whether the leader's loops run now

    async def step(self) -> bool:
        """One tick: start the loops on becoming leader, stop them on losing it."""
        try:
            now = await self.leadership.tick()
        except Exception:  # a tick that failed proves nothing: lead no more until one succeeds
            log.exception("leadership tick failed")
            now = False
        if now and not self.leading:
            log.info("leader: starting the scheduler, the poller and the relay subscriber")
            self.leading = True
            await self._start()
        elif self.leading and not now:
            log.warning("no longer the leader: stopping the leader's loops")
            self.leading = False
            await self._stop()
        return now

    async def run(self) -> None:
        """Tick forever (until cancelled); the loops stop with it."""
        try:
            while True:
                await self.leadership.wait(self._tick, self._on_notify)
                await self.step()
        finally:
            if self.leading:
                self.leading = False
                await asyncio.shield(self._stop())
