"""The PostgreSQL engine: one psycopg 3 connection, owned by one thread of its own.

The same shape as :mod:`bot.store.sqlite`: each call is one hop to that thread, and a
transaction (BEGIN, the function's statements, COMMIT) happens inside one hop, so the
table-family modules stay synchronous and a transaction costs one hand-off. The connection
is in autocommit mode and :meth:`PostgresEngine.atomic` issues BEGIN and COMMIT itself.

Engine differences live here and only here:

- placeholders: the store's SQL is written with ``?``; :func:`pyformat` rewrites it to
  psycopg's ``%s`` (and a literal ``%`` to ``%%``) once per distinct statement;
- flags: the schema keeps them as INTEGER 0/1 (SQLite has no boolean type and binds a Python
  bool as 1/0); here a bool is sent as an integer too, so the same SQL works;
- DDL: :func:`dialect` turns SQLite's auto-numbered ``INTEGER PRIMARY KEY`` into an identity;
- writers in other processes: PostgreSQL does not serialize write transactions as SQLite's
  BEGIN IMMEDIATE does, so a transaction that reads and then writes on what it read names
  what it works on (:meth:`PostgresTx.serialize`), and takes transaction-scoped advisory
  locks on those names before its reads;
- the clock of leases (:attr:`PostgresTx.clock`), claims that skip locked rows, NOTIFY;
- leadership (:class:`PostgresLeadership`): a session advisory lock on a connection of its own
  (not the engine's), the lease row of :mod:`bot.store.leader`, and LISTEN for wake-ups.

A lost connection is reopened on the next call, with a growing pause between failed attempts
(the call in between fails at once instead of waiting); a transaction that failed is never
replayed: the error reaches its caller, as :class:`~bot.store.engine.StoreUnavailable` when the
connection is gone (the caller cannot tell whether a COMMIT cut off that way took effect).
Only a BEGIN that finds the connection dead (the server restarted while the bot was idle) is
tried once more on a new one: nothing of the transaction had run.

Round trips: :meth:`PostgresTx.batch` sends a list of statements in one round trip (psycopg's
pipeline mode), with the transaction's advisory locks and NOTIFYs folded into one leading
statement; admission is BEGIN, three batches and COMMIT (see :mod:`bot.community.admission`).

Clocks, for when several hosts share one database: what processes compare is taken from the
database's clock (:attr:`PostgresTx.clock`, ``clock_timestamp()``): the leases (the leader's,
delivery claims), and in admission (:meth:`PostgresTx.now`) the quota windows, the job's
``created_at`` (which the windows count) and the allowance window, and a moderator's quota
reset. Still the writing host's ``time.time()``: the other job timestamps (``updated_at``,
``submitted_at``, ``completed_at``, ``delivered_at``; the leader's job timeout compares
``submitted_at`` with its own clock, so a takeover by a skewed host moves that timeout by the
skew), ledger rows other than reservations, audit rows, a CLI job's ``created_at``, and the
windows ``/quota show`` displays (off by the skew of the host that answers; admission itself
decides on the database's clock). Statements are prepared by psycopg after a few uses: behind
PgBouncer, use session pooling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import psycopg
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types

from bot.store import leader
from bot.store.engine import NotLeader, Query, StoreUnavailable, first_value

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT: Final = 10  # seconds; a server that does not answer fails the call, not the bot
RETRY_FIRST: Final = 0.5  # seconds before a second attempt to reconnect, doubling up to RETRY_MOST
# Low: an attempt at a server that is down is refused at once, and while the engine waits every
# member's /animate is refused ("try again shortly"), even if the server is back already.
RETRY_MOST: Final = 5.0
BEGIN: Final = "BEGIN ISOLATION LEVEL READ COMMITTED"  # PostgreSQL's default, said out loud
# The leader's session advisory lock: one 32-bit number, so pg_locks shows it as classid 0,
# objid LEADER_LOCK, objsubid 1 (how a follower finds the holder's backend).
LEADER_LOCK: Final = 0x616E696D  # "anim"

_INTEGER_PRIMARY_KEY: Final = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def pyformat(sql: str) -> str:
    """``sql`` with ``?`` placeholders as psycopg's ``%s``, and ``%`` as ``%%``.

    A ``?`` inside a quoted literal or identifier is left alone; comments are not parsed (the
    store's SQL has none inside a statement: migrate.py drops comment lines). Cached: the
    store's statements are a few hundred distinct strings, and admission runs a dozen per job.
    """
    out: list[str] = []
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


def dialect(sql: str) -> str:
    """A migration statement as PostgreSQL needs it: SQLite's ``INTEGER PRIMARY KEY`` (an alias
    of the rowid, numbered by SQLite when no value is given) becomes an identity column."""
    return _INTEGER_PRIMARY_KEY.sub("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql)


def lock_id(key: str) -> int:
    """A signed 64-bit advisory-lock id for ``key``, the same in every process (hashlib, not
    Python's per-process randomized ``hash``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


@functools.lru_cache(maxsize=16)
def _lock_sql(count: int) -> str:
    # The select list is evaluated left to right: the locks are taken in the order given.
    return "SELECT " + ", ".join(["pg_advisory_xact_lock(%s)"] * count)


@functools.lru_cache(maxsize=16)
def _prelude_sql(locks: int, notifies: int) -> str:
    # Left to right: the locks are taken in the order given (see _lock_sql).
    return "SELECT " + ", ".join(["pg_advisory_xact_lock(%s)"] * locks + ["pg_notify(%s, '')"] * notifies)


class _FlagDumper(Dumper):
    """A Python bool as an INTEGER 0/1, the schema's flags (as SQLite binds it)."""

    oid = pg_types["int4"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def _rows(cursor: psycopg.Cursor[Any]) -> list[Any]:
    """A statement's rows; a statement that returns none (a write without RETURNING) as
    ``[(rows changed,)]`` (see :class:`bot.store.engine.Query`). Asked of the result, not of
    ``.description``, which builds its column objects every time."""
    result = cursor.pgresult
    if result is not None and result.status == psycopg.pq.ExecStatus.TUPLES_OK:
        return cursor.fetchall()
    return [(cursor.rowcount,)]


class PostgresTx:
    """:class:`bot.store.engine.Tx` on a psycopg connection (statements written with ``?``)."""

    __slots__ = ("batch_cursors", "connection", "cursor")
    clock = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"  # not now(): the tx's start
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.cursor = connection.cursor()  # one cursor, reused: only this thread uses it
        # A cursor keeps the result of its last statement only: a batch needs one per query.
        # Kept and reused (growing to the largest batch seen), as the one cursor above.
        self.batch_cursors: list[psycopg.Cursor[Any]] = []

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.cursor.execute(pyformat(sql), params).fetchall()

    def first(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cursor.execute(pyformat(sql), params).fetchone()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.first(sql, params)
        return row[0] if row else None

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.cursor.execute(pyformat(sql), params).rowcount

    def write_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        if params:
            self.cursor.executemany(pyformat(sql), params)

    def batch(
        self, queries: Sequence[Query[Any]], *, serialize: Sequence[str] = (), notify: Sequence[str] = ()
    ) -> list[Any]:
        """Every statement in one round trip: psycopg's pipeline mode queues them and sends
        them together, and the server answers them in order. Leaving the pipeline waits for
        every answer; if a statement failed, the server skipped those after it and psycopg
        raises its error there (the transaction is then aborted: the caller's rollback ends it).
        """
        sent = [query for query in queries if query.sql]  # nothing to ask (see Query)
        if len(sent) == 1 and not serialize and not notify:  # a pipeline would only cost
            cursor = self.cursor.execute(pyformat(sent[0].sql), sent[0].params)
            rows = [_rows(cursor)]
        else:
            while len(self.batch_cursors) < len(sent):
                self.batch_cursors.append(self.connection.cursor())
            cursors = self.batch_cursors[: len(sent)]
            with self.connection.pipeline():
                if serialize or notify:
                    # One statement takes the locks and queues the wake-ups (a NOTIFY is sent
                    # at commit, wherever it stands in the transaction): each statement costs
                    # CPU here and in the server, which on one machine weighs more than the
                    # round trip.
                    ordered = sorted(set(serialize))
                    params = [*map(lock_id, ordered), *notify]
                    self.cursor.execute(_prelude_sql(len(ordered), len(notify)), params)
                for cursor, query in zip(cursors, sent, strict=True):
                    cursor.execute(pyformat(query.sql), query.params)
            rows = [_rows(cursor) for cursor in cursors]
        answers = iter(rows)
        return [query.read(next(answers) if query.sql else []) for query in queries]

    def now(self) -> Query[float]:
        """The database's clock (:attr:`clock`): hosts whose clocks differ still agree on it."""
        return _NOW

    def serialize(self, *keys: str) -> None:
        """Wait for, then hold until the transaction ends, an advisory lock per key.

        The keys are sorted so every transaction takes its locks in one global order (no
        deadlock between two of them); call it once, before the reads the locks protect.
        """
        if keys:
            ordered = sorted(set(keys))
            self.cursor.execute(_lock_sql(len(ordered)), [lock_id(key) for key in ordered])

    def notify(self, channel: str) -> None:
        """NOTIFY ``channel``: delivered when the transaction commits, once per channel and
        transaction however often it is called."""
        self.cursor.execute("SELECT pg_notify(%s, '')", (channel,))


_NOW: Final[Query[float]] = Query(f"SELECT {PostgresTx.clock}", (), first_value)


# A transaction is one hop, so a session idle inside one for seconds is a frozen process
# (SIGSTOP, a stalled host): the server ends it, and its row locks with it, instead of letting
# it stall every other process that waits on those rows (the leader's takeover ends only the
# frozen leader's lock connection).
IDLE_IN_TRANSACTION_MS = 5_000


def _connect(url: str, application_name: str = "animate-bot") -> PostgresTx:
    conn = psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        application_name=application_name,
        options=f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
    )
    conn.adapters.register_dumper(bool, _FlagDumper)
    return PostgresTx(conn)


class PostgresEngine:
    """:class:`bot.store.engine.Engine` for a PostgreSQL database named by a URL."""

    def __init__(self, executor: ThreadPoolExecutor, url: str, tx: PostgresTx) -> None:
        self._executor = executor
        self._url = url
        self._tx: PostgresTx | None = tx
        self._closed = False
        self._retry_at = 0.0  # monotonic time before which no reconnect is tried
        self._retry_pause = RETRY_FIRST

    @classmethod
    async def open(cls, url: str) -> PostgresEngine:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-postgres")
        try:
            tx = await asyncio.get_running_loop().run_in_executor(executor, _connect, url)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, url, tx)

    def dialect(self, sql: str) -> str:
        return dialect(sql)

    async def _hop(self, fn: Callable[[PostgresTx], T], in_transaction: bool) -> T:
        """Run ``fn`` on the connection's thread: the one hand-off of every call."""
        if self._closed:
            raise RuntimeError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._call, fn, in_transaction
        )

    def _call(self, fn: Callable[[PostgresTx], T], in_transaction: bool) -> T:
        try:
            tx = self._connection()
            if not in_transaction:
                return fn(tx)
            tx = self._begin(tx)
            try:
                result = fn(tx)
            except BaseException:
                self._rollback(tx)
                raise
            tx.cursor.execute("COMMIT")
            return result
        except psycopg.OperationalError as exc:
            if self._tx is not None and not (self._tx.connection.broken or self._tx.connection.closed):
                raise  # the connection is fine: the statement's own failure (a deadlock, a timeout)
            # The rest of the bot knows no psycopg: a lost database is the store's own exception.
            self._drop()
            raise StoreUnavailable(f"the database is out of reach: {exc}") from exc

    def _begin(self, tx: PostgresTx) -> PostgresTx:
        """BEGIN, on a fresh connection if the open one turns out to be lost (a server restart
        while the bot was idle): nothing of the transaction has run yet, so this is no replay."""
        try:
            tx.cursor.execute(BEGIN)
            return tx
        except psycopg.OperationalError:
            if not tx.connection.broken:
                raise
        self._drop()
        tx = self._connection()
        tx.cursor.execute(BEGIN)
        return tx

    def _rollback(self, tx: PostgresTx) -> None:
        # A failed ROLLBACK must not hide the error that caused it; a lost connection has
        # rolled the transaction back anyway.
        try:
            tx.cursor.execute("ROLLBACK")
        except psycopg.Error:
            if tx.connection.broken or tx.connection.closed:
                self._drop()

    def _connection(self) -> PostgresTx:
        """The open connection, reopened first if it was lost (on the engine's thread)."""
        if self._tx is not None:
            return self._tx
        if time.monotonic() < self._retry_at:
            raise psycopg.OperationalError("the database connection is lost; reconnecting shortly")
        try:
            self._tx = _connect(self._url)
        except psycopg.OperationalError:
            self._retry_at = time.monotonic() + self._retry_pause
            self._retry_pause = min(self._retry_pause * 2, RETRY_MOST)
            raise
        self._retry_pause = RETRY_FIRST
        log.warning("database connection reopened")
        return self._tx

    def _drop(self) -> None:
        if self._tx is not None:
            log.warning("database connection lost; it is reopened on the next call")
            self._tx.connection.close()
            self._tx = None

    async def atomic(self, fn: Callable[[PostgresTx], T]) -> T:
        return await self._hop(fn, True)

    def leadership(self, holder: str, lease: float) -> PostgresLeadership:
        return PostgresLeadership(self._url, holder, lease)

    async def run(self, fn: Callable[[PostgresTx], T]) -> T:
        return await self._hop(fn, False)

    async def close(self) -> None:
        """Close the connection; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._drop_quietly)
        self._executor.shutdown(wait=False)  # the thread is idle now; it ends on its own

    def _drop_quietly(self) -> None:
        if self._tx is not None:
            self._tx.connection.close()
            self._tx = None


def _in_transaction(tx: PostgresTx, fn: Callable[[PostgresTx], T]) -> T:
    tx.cursor.execute(BEGIN)
    try:
        result = fn(tx)
    except BaseException:
        tx.cursor.execute("ROLLBACK")
        raise
    tx.cursor.execute("COMMIT")
    return result


class PostgresLeadership:
    """:class:`bot.store.engine.Leadership` on PostgreSQL: the leader holds the session advisory
    lock :data:`LEADER_LOCK` on a connection of its own, with its own thread.

    - A follower's tick tries the lock (``pg_try_advisory_lock``, never waiting). When a process
      dies or its connection drops, PostgreSQL releases the lock, and the next tick of a
      follower takes it.
    - A frozen leader (SIGSTOP, a stalled VM) keeps its connection and so its lock; it stops
      renewing the lease row, though. A follower that sees the lease older than ``lease``
      seconds (the database's clock) ends the holder's backend (``pg_terminate_backend``, which
      needs the same role or ``pg_signal_backend``) and takes the lock.
    - Taking the lock starts a new term (:func:`bot.store.leader.take_over`) and LISTENs on the
      jobs channel. The leader's tick renews the lease, which also proves its connection alive;
      a failed or refused renewal (the term moved on) ends its leadership at once.
    - By its own clock, too: :attr:`is_leader` turns False once ``lease`` seconds passed since
      the last renewal began, so a leader waking from a freeze stops before its next tick.
    """

    def __init__(self, url: str, holder: str, lease: float) -> None:
        self._url = url
        self._holder = holder
        self._lease = lease
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-leader")
        self._tx: PostgresTx | None = None
        self._pid: int | None = None  # the backend of our lock connection
        self._term: int | None = None
        self._renewed = 0.0  # monotonic time at which the last good renewal was sent
        self._suspect: tuple[int, float] | None = None  # a holder with no fresh lease, first seen
        self._closed = False

    @property
    def is_leader(self) -> bool:
        return self._term is not None and time.monotonic() - self._renewed < self._lease

    @property
    def term(self) -> int | None:
        return self._term

    def fence(self) -> int | None:
        if not self.is_leader:
            raise NotLeader("this process does not lead")
        return self._term

    async def tick(self) -> bool:
        if self._closed:
            return False
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._tick)

    async def wait(self, seconds: float, on_notify: Callable[[], None]) -> None:
        deadline = time.monotonic() + seconds
        while not self._closed and (left := deadline - time.monotonic()) > 0:
            if self._term is None:
                await asyncio.sleep(left)
                return
            if await asyncio.get_running_loop().run_in_executor(self._executor, self._listen, left):
                on_notify()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._step_down)
        self._executor.shutdown(wait=False)

    # --- on the leadership's thread ---------------------------------------------------------

    def _tick(self) -> bool:
        try:
            return self._renew() if self._term is not None else self._campaign()
        except psycopg.Error as exc:
            if self._term is not None:
                log.warning("leadership lost: its connection failed (%s)", exc)
            self._step_down()
            return False

    def _renew(self) -> bool:
        assert self._tx is not None and self._term is not None
        sent = time.monotonic()
        if not leader.renew(self._tx, self._term, self._pid):
            log.warning("leadership lost: term %d was taken over", self._term)
            self._step_down()
            return False
        self._renewed = sent
        return True

    def _campaign(self) -> bool:
        tx = self._connection()
        # Not free: take it only after ending a holder whose lease ran out.
        if not self._try_lock(tx) and not (self._end_stale_holder(tx) and self._try_lock(tx)):
            return False
        self._suspect = None
        sent = time.monotonic()
        self._pid = int(tx.scalar("SELECT pg_backend_pid()"))
        self._term = _in_transaction(tx, lambda t: leader.take_over(t, self._holder, self._pid))
        tx.write(f"LISTEN {leader.JOBS_CHANNEL}")
        self._renewed = sent
        log.warning("this process leads now (term %d, backend %d)", self._term, self._pid)
        return True

    @staticmethod
    def _try_lock(tx: PostgresTx) -> bool:
        return bool(tx.scalar("SELECT pg_try_advisory_lock(?)", (LEADER_LOCK,)))

    def _end_stale_holder(self, tx: PostgresTx) -> bool:
        """End the lock holder's backend if its lease ran out; True when one was ended.

        A holder that has not written its lease yet (it took the lock a moment ago, or froze
        right then) is given ``lease`` seconds, counted here, before it is ended too.
        """
        holder = tx.scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0"
            f" AND objid = {LEADER_LOCK} AND objsubid = 1 AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        if holder is None:
            return True  # released meanwhile: try again at once
        now = time.monotonic()
        current = leader.lease(tx)
        if current is not None and current[1] == holder:
            stale = current[2] > self._lease
            self._suspect = None
        else:
            if self._suspect is None or self._suspect[0] != holder:
                self._suspect = (int(holder), now)
            stale = now - self._suspect[1] > self._lease
        if not stale:
            return False
        log.warning("the leader (backend %s) stopped renewing its lease: ending its connection", holder)
        # With a timeout (ms) the call waits for the backend to be gone, its lock with it.
        tx.scalar("SELECT pg_terminate_backend(?, 2000)", (int(holder),))
        self._suspect = None
        return True

    def _listen(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a wake-up on the jobs channel; True if one came (psycopg
        keeps those that arrived during another statement for the next call)."""
        tx = self._tx
        if tx is None:
            time.sleep(seconds)
            return False
        try:
            return any(True for _ in tx.connection.notifies(timeout=seconds, stop_after=1))
        except psycopg.Error:
            # A dead connection fails at once: wait out the time (no spinning) and let the next
            # tick find it dead and step down.
            time.sleep(seconds)
            return False

    def _connection(self) -> PostgresTx:
        if self._tx is None or self._tx.connection.closed or self._tx.connection.broken:
            self._tx = _connect(self._url, "animate-bot-leader")
        return self._tx

    def _step_down(self) -> None:
        """Close the lock connection: PostgreSQL releases the lock with it."""
        self._term = None
        self._pid = None
        if self._tx is not None:
            with contextlib.suppress(psycopg.Error):
                self._tx.connection.close()
            self._tx = None
