"""PendingAcks: work after a defer waits while other interactions are still unacknowledged.

The interactions here are stand-ins for discord.py's: an id and a response that is done or not
(what the client hands the set as it parses each INTERACTION_CREATE)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.config import load_settings
from bot.discord_adapter.acks import ACK_WINDOW, PendingAcks
from bot.discord_adapter.client import AnimateBot


@dataclass
class Response:
    done: bool = False

    def is_done(self) -> bool:
        return self.done


@dataclass
class Interaction:
    id: int
    response: Response = field(default_factory=Response)


async def test_waiters_go_on_once_every_received_interaction_is_answered() -> None:
    acks = PendingAcks()
    first, second = Interaction(1), Interaction(2)
    acks.received(first)
    acks.received(second)
    waiter = asyncio.create_task(acks.cleared(max_wait=60))
    first.response.done = True
    await asyncio.sleep(0.05)  # several sweeps: one interaction is still unanswered
    assert not waiter.done() and len(acks) == 1
    second.response.done = True
    await asyncio.wait_for(waiter, 10)
    assert len(acks) == 0
    await acks.cleared(max_wait=60)  # nothing pending: no wait at all


async def test_an_answered_interaction_is_not_waited_for() -> None:
    acks = PendingAcks()
    acks.received(Interaction(1, Response(done=True)))
    assert len(acks) == 0
    await acks.cleared(max_wait=60)


async def test_a_waiter_goes_on_after_its_longest_wait_even_if_some_are_never_answered() -> None:
    acks = PendingAcks()
    acks.received(Interaction(1))
    await acks.cleared(max_wait=0.01)
    assert len(acks) == 1  # still pending: the waiter gave up waiting, not the set
    acks.close()


async def test_an_interaction_past_discords_window_no_longer_counts() -> None:
    now = [0.0]
    acks = PendingAcks(clock=lambda: now[0])
    acks.received(Interaction(1))
    waiter = asyncio.create_task(acks.cleared(max_wait=60))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    now[0] = ACK_WINDOW + 0.1  # it can no longer be acknowledged: nothing to wait for
    await asyncio.wait_for(waiter, 10)
    assert len(acks) == 0


async def test_the_client_tells_the_set_of_each_interaction_as_it_is_dispatched() -> None:
    async with AnimateBot(load_settings({"DISCORD_TOKEN": "not-a-real-token"})) as bot:
        bot.dispatch("interaction", Interaction(5))
        bot.dispatch("typing", Interaction(6))  # other events are not interactions
        assert len(bot.pending_acks) == 1
    assert len(bot.pending_acks) == 0  # closing the client lets every waiter go
