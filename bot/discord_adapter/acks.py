"""Interactions received and not yet acknowledged: work that can wait lets them go first.

Discord allows 3 s to acknowledge an interaction, and a burst's last acknowledgement waits
behind everything this process does meanwhile on its one event loop (and, through the GIL, on
its threads). After its defer an /animate goes on to reads, a download and a decode, and those
competed with the defers of the same burst still to be sent: measured with py-spy in the first
200-burst of ``bench/bench_ack.py``, the post-defer work (store reads on the database thread, the
picture fetch) took about a fifth of the bot's samples between the burst's first frame and its
last acknowledgement. :meth:`PendingAcks.cleared` is where such work waits its turn.

The client tells :meth:`PendingAcks.received` of each interaction as discord.py parses it, before
any handler runs. An interaction leaves the set once its response is done, or once Discord's
window has closed (it can no longer be acknowledged, so there is nothing left to wait for).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

ACK_WINDOW: Final = 3.0  # seconds Discord allows for the first response
# How often the set is swept while it is not empty: acknowledgements come from many tasks, and
# one sweep is cheaper than a hook in each (a burst of 200 is swept in microseconds).
SWEEP: Final = 0.005
# The longest a waiter waits: under a steady stream of interactions the set may never empty,
# and the work behind it must still go on.
MAX_WAIT: Final = 1.0


class Answerable(Protocol):
    """What is read of a discord.py interaction: its id, and whether its response was sent."""

    @property
    def id(self) -> int: ...

    @property
    def response(self) -> Any: ...


class PendingAcks:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[int, tuple[float, Answerable]] = {}  # interaction id -> (received, it)
        self._cleared = asyncio.Event()
        self._cleared.set()
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def received(self, interaction: Answerable) -> None:
        """An interaction was parsed: it is pending until its response is done."""
        if interaction.response.is_done():
            return
        self._pending[interaction.id] = (self._clock(), interaction)
        self._cleared.clear()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="pending-acks")

    async def cleared(self, max_wait: float = MAX_WAIT) -> None:
        """Return once no interaction waits for its acknowledgement, or after ``max_wait``."""
        if self._cleared.is_set():
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as
        # the event is set, and a stop would then wait on this task.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._cleared.wait()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._pending.clear()
        self._cleared.set()

    def _drop_answered(self) -> None:
        too_old = self._clock() - ACK_WINDOW
        for key, (at, interaction) in list(self._pending.items()):
            if at < too_old or interaction.response.is_done():
                del self._pending[key]

    async def _sweep(self) -> None:
        while self._pending:
            await asyncio.sleep(SWEEP)
            self._drop_answered()
        self._cleared.set()
