"""The SQLite engine: one connection in WAL mode, owned by one thread of its own.

Each call is one hop to that thread (``loop.run_in_executor`` on a single-worker executor),
however many statements the function runs: admission is a dozen statements and a group of
webhook reports more, and a hop costs more than a statement, so a transaction is ONE hop. The
thread opens the connection and is the only one to use it. (aiosqlite, which the relay uses,
offers no public way to run a function on its thread, hence an executor of our own.)

Because every transaction starts and ends inside one hop, and the one thread runs hops in
order, no task's statement can land inside another task's open transaction: no lock needed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bot.store.engine import Query
from bot.store.leader import SoleLeader

T = TypeVar("T")

WAL_ATTEMPTS = 40  # x 50 ms
MIN_VERSION = (3, 35)  # UPDATE ... RETURNING; upserts (ON CONFLICT ... DO UPDATE) need 3.24


class SqliteTx:
    """:class:`bot.store.engine.Tx` on a ``sqlite3`` connection (its placeholders are ``?``)."""

    __slots__ = ("connection",)
    # Unix seconds with milliseconds (unixepoch('subsec') needs SQLite 3.42; this works on 3.35).
    clock = "((julianday('now') - 2440587.5) * 86400.0)"
    skip_locked = ""  # one writer at a time: no row lock to skip

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.connection.execute(sql, params).fetchall()

    def first(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.connection.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.first(sql, params)
        return row[0] if row else None

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.connection.execute(sql, params).rowcount

    def write_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.connection.executemany(sql, params)

    def batch(
        self, queries: Sequence[Query[Any]], *, serialize: Sequence[str] = (), notify: Sequence[str] = ()
    ) -> list[Any]:
        """One statement after the other: in-process, there is no round trip to save (and
        ``serialize`` and ``notify`` have nothing to do, as their methods)."""
        return [q.read(self._run(q)) for q in queries]

    def _run(self, query: Query[Any]) -> list[Any]:
        if not query.sql:
            return []
        cursor = self.connection.execute(query.sql, query.params)
        # No columns: a write without RETURNING, read as (rows changed,).
        return cursor.fetchall() if cursor.description is not None else [(cursor.rowcount,)]

    def now(self) -> Query[float]:
        """The host's clock, asked of no one: one process per file, on one host, so no other
        clock to agree with; and SQLite's own ('now') has only millisecond resolution before
        3.42, where jobs admitted in the same millisecond would tie in created_at (the queue's
        order)."""
        at = time.time()
        return Query("", (), lambda rows: at)

    def serialize(self, *keys: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already serializes every write transaction."""

    def notify(self, channel: str) -> None:
        """Nothing to do: one process per file, which wakes its own loops in memory."""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # explicit transactions only
    for attempt in range(WAL_ATTEMPTS):
        # Two processes opening a new file at once: the switch to WAL can fail with "database
        # is locked" at once, without waiting for the busy timeout (seen in the tests).
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable in WAL across a process crash
    conn.execute("PRAGMA busy_timeout=5000")  # the CLI and the bot may share one file
    return conn


def _in_transaction(fn: Callable[[SqliteTx], T], tx: SqliteTx) -> T:
    # IMMEDIATE takes the write lock at BEGIN: checks and writes see no one else's writes.
    tx.write("BEGIN IMMEDIATE")
    try:
        result = fn(tx)
    except BaseException:
        tx.write("ROLLBACK")
        raise
    tx.write("COMMIT")
    return result


class SqliteEngine:
    """:class:`bot.store.engine.Engine` for a SQLite file (or ``":memory:"``)."""

    def __init__(self, executor: ThreadPoolExecutor, tx: SqliteTx) -> None:
        self._executor = executor
        self._tx = tx
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> SqliteEngine:
        if sqlite3.sqlite_version_info < MIN_VERSION:
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or newer is needed")
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, SqliteTx(conn))

    def dialect(self, sql: str) -> str:
        return sql  # the migrations are written in SQLite's dialect

    async def _hop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the connection's thread: the one hand-off of every call."""
        if self._closed:
            raise RuntimeError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def atomic(self, fn: Callable[[SqliteTx], T]) -> T:
        return await self._hop(_in_transaction, fn, self._tx)

    async def run(self, fn: Callable[[SqliteTx], T]) -> T:
        return await self._hop(fn, self._tx)

    def leadership(self, holder: str, lease: float) -> SoleLeader:
        return SoleLeader()  # one process per file: see SoleLeader

    async def close(self) -> None:
        """Close the connection; closing again does nothing."""
        if self._closed:
            return
        await self._hop(self._tx.connection.close)
        self._closed = True
        self._executor.shutdown(wait=False)  # the thread is idle now; it ends on its own
