"""The relay's durable queue on its own: ids, durability across reopen, acks, expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import aiosqlite

from relay.store import SCHEMA, Appended, EventStore


async def test_ids_grow_per_channel_and_reads_come_in_order(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "r.db")
    try:
        a = [(await store.append("alpha", f"a{i}".encode(), f"sig{i}")).id for i in range(3)]
        b = [(await store.append("beta", b"b", None)).id]
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
        appended = await asyncio.gather(*(store.append("alpha", str(i).encode(), None) for i in range(500)))
        assert sorted(a.id for a in appended) == list(range(1, 501))
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
        assert (await store.append("alpha", b"e6", None)).id == 7
    finally:
        await store.close()


async def test_ack_is_cumulative_and_per_channel(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "r.db")
    try:
        for i in range(4):
            await store.append("alpha", f"a{i}".encode(), None)
            await store.append("beta", f"b{i}".encode(), None)
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
        assert (await store.append("alpha", b"next", None)).id == 3
    finally:
        await store.close()


async def test_an_event_the_channel_holds_is_not_stored_again(tmp_path: Path) -> None:
    # The API retries a webhook whose 200 it missed: same body, same signature.
    store = await EventStore.open(tmp_path / "r.db")
    try:
        first = await store.append("alpha", b'{"id": "j1"}', "sig1")
        storm = await asyncio.gather(*(store.append("alpha", b'{"id": "j1"}', "sig1") for _ in range(20)))
        assert first.duplicate is False and {(a.id, a.duplicate) for a in storm} == {(first.id, True)}
        # Not the same event: another channel, another body, or the body signed differently.
        others = [
            await store.append("beta", b'{"id": "j1"}', "sig1"),
            await store.append("alpha", b'{"id": "j2"}', "sig1"),
            await store.append("alpha", b'{"id": "j1"}', "sig2"),
        ]
        assert [a.duplicate for a in others] == [False, False, False]
        assert [e.id for e in await store.after("alpha", 0, limit=50)] == [1, 2, 3]
        assert store.holding("alpha") == 3 and store.duplicates == 20
        # Once acknowledged it is no longer held: a later identical post is a new event.
        await store.ack("alpha", 3)
        assert await store.append("alpha", b'{"id": "j1"}', "sig1") == Appended(4, duplicate=False)
    finally:
        await store.close()


async def test_a_relay_file_from_before_the_digest_is_upgraded_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    async with aiosqlite.connect(path) as db:  # the schema as earlier relays left it
        for statement in SCHEMA:
            await db.execute(statement)
        await db.execute(
            "INSERT INTO events (channel, id, received_at, body, signature)"
            " VALUES ('alpha', 1, 0, x'7b7d', 's')"
        )
        await db.execute("INSERT INTO channels VALUES ('alpha', 1)")
        await db.commit()
    store = await EventStore.open(path)
    try:
        assert (await store.append("alpha", b"{}", "s")).id == 2  # the old row has no digest to match
        assert (await store.append("alpha", b"{}", "s")) == Appended(2, duplicate=True)
        assert [e.id for e in await store.after("alpha", 0, limit=10)] == [1, 2]
    finally:
        await store.close()
