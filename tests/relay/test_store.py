"""The relay's durable queue on its own: ids, durability across reopen, acks, expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

from relay.store import EventStore


async def test_ids_grow_per_channel_and_reads_come_in_order(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "r.db")
    try:
        a = [await store.append("alpha", f"a{i}".encode(), f"sig{i}") for i in range(3)]
        b = [await store.append("beta", b"b", None)]
        assert a == [1, 2, 3] and b == [1]
        events = await store.after("alpha", 1, limit=10)
        assert [(e.id, e.body, e.signature) for e in events] == [(2, b"a1", "sig1"), (3, b"a2", "sig2")]
        beta = await store.after("beta", 0, limit=10)
        assert [(e.id, e.body, e.signature) for e in beta] == [(1, b"b", None)]
        assert store.last_id("alpha") == 3 and store.last_id("gamma") == 0
        assert store.holding("alpha") == 3 and store.holding("beta") == 1
    finally:
        await store.close()


async def test_concurrent_appends_share_commits_and_get_unique_ordered_ids(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "r.db")
    commits: list[list[str]] = []

    def stored(channels: Iterable[str]) -> None:
        commits.append(list(channels))

    store.on_stored = stored
    try:
        ids = await asyncio.gather(*(store.append("alpha", str(i).encode(), None) for i in range(500)))
        assert sorted(ids) == list(range(1, 501))
        events = await store.after("alpha", 0, limit=1000)
        # The id order is the order the posts were made in.
        assert [int(e.body) for e in events] == list(range(500))
        assert len(commits) < 500  # group commit: a burst shares transactions
    finally:
        await store.close()


async def test_held_events_and_the_id_mark_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = await EventStore.open(path)
    for i in range(5):
        await store.append("alpha", f"e{i}".encode(), "sig")
    assert await store.ack("alpha", 5) == 5  # everything acknowledged: the table is empty
    await store.append("alpha", b"e5", "sig")
    await store.close()

    store = await EventStore.open(path)
    try:
        assert [e.body for e in await store.after("alpha", 0, limit=10)] == [b"e5"]
        assert store.holding("alpha") == 1
        # Ids never go back, even when no row is left to show the highest one.
        assert await store.ack("alpha", 6) == 1
        await store.close()
        store = await EventStore.open(path)
        assert await store.append("alpha", b"e6", None) == 7
    finally:
        await store.close()


async def test_ack_is_cumulative_and_per_channel(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "r.db")
    try:
        for _ in range(4):
            await store.append("alpha", b"a", None)
            await store.append("beta", b"b", None)
        assert await store.ack("alpha", 3) == 3
        assert await store.ack("alpha", 3) == 0  # a repeated ack is harmless
        assert [e.id for e in await store.after("alpha", 0, limit=10)] == [4]
        assert [e.id for e in await store.after("beta", 0, limit=10)] == [1, 2, 3, 4]
        assert store.holding("alpha") == 1 and store.holding("beta") == 4
        assert await store.held() == 5 and await store.held("beta") == 4
    finally:
        await store.close()


async def test_purge_drops_only_events_older_than_the_cut(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "r.db")
    try:
        await store.append("alpha", b"old", None)
        cut = time.time()
        await asyncio.sleep(0.01)
        await store.append("alpha", b"new", None)
        assert await store.purge(cut) == 1
        assert [e.body for e in await store.after("alpha", 0, limit=10)] == [b"new"]
        assert store.holding("alpha") == 1
        assert await store.append("alpha", b"next", None) == 3
    finally:
        await store.close()
