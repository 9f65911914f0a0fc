"""The relay's durable queue: one SQLite file (WAL), events numbered per channel.

Writes go through one connection and are group-committed: every post that arrives while a
commit is on disk joins the next one, so a burst costs a few fsyncs, not one per event. A post
is answered only after its commit (``synchronous=FULL``): a 200 means the event survives a
crash or a power cut. Streams read through a second connection, so they see committed events
only.

Ids grow per channel and never go back: the high-water mark lives in ``channels`` and
outlives acknowledged, expired and purged events, also across restarts.

An event identical to one the channel still holds (the same body and signature: the API
retrying a webhook whose answer it missed) is not stored again: its post gets the held event's
id, so a retry storm cannot fill the channel or reach the bot twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        channel TEXT NOT NULL,
        id INTEGER NOT NULL,
        received_at REAL NOT NULL,
        body BLOB NOT NULL,
        signature TEXT,
        PRIMARY KEY (channel, id)
    )""",
    "CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at)",
    "CREATE TABLE IF NOT EXISTS channels (channel TEXT PRIMARY KEY, last_id INTEGER NOT NULL)",
)
# Relay files made before events had a digest get the column (NULL for their old rows, which
# are then never matched: NULLs are distinct in a UNIQUE index).
DIGEST = (
    "ALTER TABLE events ADD COLUMN digest BLOB",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_digest ON events (channel, digest)",
)


def digest(body: bytes, signature: str | None) -> bytes:
    """What makes two posts the same event: the signed body, with its signature."""
    return hashlib.sha256((signature or "").encode() + b"\n" + body).digest()


@dataclass(frozen=True, slots=True)
class Appended:
    id: int
    duplicate: bool  # the channel held this very event already: nothing was stored


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    body: bytes
    signature: str | None
    received_at: float


@dataclass(slots=True)
class _Pending:
    channel: str
    body: bytes
    signature: str | None
    digest: bytes
    received_at: float
    done: asyncio.Future[Appended]


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)  # autocommit; BEGIN is explicit
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA busy_timeout=5000")
    return db


class EventStore:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()  # one user of the writer connection at a time
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last: dict[str, int] = {}
        self._held: dict[str, int] = {}  # events stored and not yet acknowledged, per channel
        self.duplicates = 0  # posts of an event the channel held already (not stored again)
        self.on_stored: Callable[[Iterable[str]], None] = lambda channels: None

    @classmethod
    async def open(cls, path: Path | str) -> EventStore:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            for statement in SCHEMA:
                await writer.execute(statement)
            async with writer.execute("SELECT name FROM pragma_table_info('events')") as cur:
                columns = {str(row[0]) for row in await cur.fetchall()}
            for statement in DIGEST[("digest" in columns) :]:
                await writer.execute(statement)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        store = cls(writer, reader)
        async with writer.execute("SELECT channel, last_id FROM channels") as cur:
            store._last = {str(c): int(n) for c, n in await cur.fetchall()}
        # An event row above its channel's mark cannot happen through this class; be safe anyway.
        async with writer.execute("SELECT channel, MAX(id) FROM events GROUP BY channel") as cur:
            for channel, top in await cur.fetchall():
                store._last[str(channel)] = max(store._last.get(str(channel), 0), int(top))
        await store._count_held()
        return store

    async def close(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        await self._reader.close()
        await self._writer.close()

    def last_id(self, channel: str) -> int:
        """The highest id ever given in ``channel`` (0 before the first event)."""
        return self._last.get(channel, 0)

    def holding(self, channel: str) -> int:
        """Events of ``channel`` on disk and not yet acknowledged or expired (kept in memory)."""
        return self._held.get(channel, 0)

    async def _count_held(self) -> None:
        async with self._writer.execute("SELECT channel, COUNT(*) FROM events GROUP BY channel") as cur:
            self._held = {str(c): int(n) for c, n in await cur.fetchall()}

    # --- writes ------------------------------------------------------------------------------

    async def append(self, channel: str, body: bytes, signature: str | None) -> Appended:
        """Store one event; its id once it is on disk (a duplicate's: the held event's)."""
        done: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(channel, body, signature, digest(body, signature), time.time(), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="relay-store-flush")
        return await asyncio.shield(done)  # a caller that goes away does not undo the write

    async def _flush(self) -> None:
        while self._pending:
            async with self._lock:
                batch, self._pending = self._pending, []
                rows: list[tuple[str, int, float, bytes, str | None, bytes]] = []
                marks: dict[str, int] = {}
                answers: list[Appended] = []
                try:
                    await self._writer.execute("BEGIN IMMEDIATE")
                    held = await self._held_ids(batch)  # (channel, digest) -> id
                    for item in batch:
                        known = held.get((item.channel, item.digest))
                        if known is not None:  # held already, or earlier in this batch
                            answers.append(Appended(known, duplicate=True))
                            continue
                        n = marks.get(item.channel, self._last.get(item.channel, 0)) + 1
                        marks[item.channel] = held[(item.channel, item.digest)] = n
                        rows.append(
                            (item.channel, n, item.received_at, item.body, item.signature, item.digest)
                        )
                        answers.append(Appended(n, duplicate=False))
                    await self._writer.executemany(
                        "INSERT INTO events (channel, id, received_at, body, signature, digest) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    await self._writer.executemany(
                        "INSERT INTO channels (channel, last_id) VALUES (?, ?) "
                        "ON CONFLICT (channel) DO UPDATE SET last_id = excluded.last_id",
                        list(marks.items()),
                    )
                    await self._writer.execute("COMMIT")
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        await self._writer.execute("ROLLBACK")
                    log.exception("relay: storing %d event(s) failed", len(batch))
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(exc)
                    continue
                self._last.update(marks)
                for row in rows:
                    self._held[row[0]] = self._held.get(row[0], 0) + 1
                self.duplicates += len(batch) - len(rows)
                for item, answer in zip(batch, answers, strict=True):
                    if not item.done.done():
                        item.done.set_result(answer)
            if marks:
                self.on_stored(marks.keys())

    async def _held_ids(self, batch: list[_Pending]) -> dict[tuple[str, bytes], int]:
        """The held events among ``batch``'s digests (one query per batch, not per post)."""
        found: dict[tuple[str, bytes], int] = {}
        digests = list({item.digest for item in batch})
        for start in range(0, len(digests), 500):  # well under SQLite's bound on parameters
            chunk = digests[start : start + 500]
            marks = ", ".join("?" * len(chunk))  # placeholders only: the values are bound
            sql = f"SELECT channel, digest, id FROM events WHERE digest IN ({marks})"  # noqa: S608
            async with self._writer.execute(sql, chunk) as cur:
                for channel, dig, event_id in await cur.fetchall():
                    found[(str(channel), bytes(dig))] = int(event_id)
        return found

    async def ack(self, channel: str, up_to: int) -> int:
        """Drop every event of ``channel`` with id <= ``up_to``; how many were held."""
        async with self._lock:
            cur = await self._writer.execute(
                "DELETE FROM events WHERE channel = ? AND id <= ?", (channel, up_to)
            )
            dropped = max(cur.rowcount, 0)
            self._held[channel] = max(self._held.get(channel, 0) - dropped, 0)
            return dropped

    async def purge(self, received_before: float) -> int:
        """Drop every event received before this time, acknowledged or not."""
        async with self._lock:
            cur = await self._writer.execute("DELETE FROM events WHERE received_at < ?", (received_before,))
            dropped = max(cur.rowcount, 0)
            if dropped:
                await self._count_held()
            return dropped

    # --- reads -------------------------------------------------------------------------------

    async def after(self, channel: str, after_id: int, limit: int) -> list[StoredEvent]:
        """Held events of ``channel`` with id > ``after_id``, oldest first."""
        async with self._reader.execute(
            "SELECT id, body, signature, received_at FROM events WHERE channel = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (channel, after_id, limit),
        ) as cur:
            return [
                StoredEvent(int(i), bytes(b), None if s is None else str(s), float(r))
                for i, b, s, r in await cur.fetchall()
            ]

    async def held(self, channel: str | None = None) -> int:
        """Events stored and not yet acknowledged or expired (in one channel, or in all)."""
        sql, params = "SELECT COUNT(*) FROM events", tuple[str, ...]()
        if channel is not None:
            sql, params = "SELECT COUNT(*) FROM events WHERE channel = ?", (channel,)
        async with self._reader.execute(sql, params) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
