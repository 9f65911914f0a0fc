"""Turns shared by processes (Discord's identify buckets): one per name per window."""

from __future__ import annotations

import asyncio

from bot.store import Store
from tests.conftest import OpenStore


async def test_a_turn_is_taken_once_per_window_and_each_name_has_its_own(store: Store) -> None:
    assert await store.take_turn("identify:0", 5.25) == 0.0
    wait = await store.take_turn("identify:0", 5.25)
    assert 5.0 < wait <= 5.25  # the second asker is told how long to wait, and takes nothing
    assert await store.take_turn("identify:1", 5.25) == 0.0  # another bucket is free


async def test_the_turn_comes_back_after_its_window(store: Store) -> None:
    assert await store.take_turn("identify:0", 0.2) == 0.0
    wait = await store.take_turn("identify:0", 0.2)
    assert wait > 0
    await asyncio.sleep(wait + 0.01)  # SQLite's clock counts whole milliseconds
    assert await store.take_turn("identify:0", 0.2) == 0.0


async def test_processes_asking_at_once_get_one_turn_between_them(open_store: OpenStore) -> None:
    stores = [await open_store() for _ in range(4)]  # one store per process, one database
    waits = await asyncio.gather(*(s.take_turn("identify:0", 5.25) for s in stores for _ in range(3)))
    assert sorted(waits)[0] == 0.0 and all(w > 0 for w in sorted(waits)[1:])
