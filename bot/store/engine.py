"""The seam between the store and a database engine.

Everything engine-specific sits behind these two small interfaces: opening the connection and
its settings, the placeholder style, the hop to the thread (or socket) that talks to the
database, how a transaction takes the write lock, and the dialect of the migrations' DDL. The
table-family modules
(:mod:`bot.store.jobs`, :mod:`~bot.store.pools`, :mod:`~bot.store.rules`,
:mod:`~bot.store.audit`) write portable SQL with ``?`` placeholders and run it through a
:class:`Tx`; an engine whose driver uses another style (PostgreSQL's ``$1`` or ``%s``)
rewrites them in its ``Tx``. Two engines implement these: :mod:`bot.store.sqlite` and
:mod:`bot.store.postgres`.

Many writers: SQLite serializes every write transaction (BEGIN IMMEDIATE); PostgreSQL does
not, so a transaction that checks something and then writes on it names what it works on with
:meth:`Tx.serialize` (keys made by :func:`member_key` and :func:`pool_key`), once, before its
checks. The keys share one string space and are always taken sorted, so two transactions
never wait on each other's keys in opposite orders.

Several processes: :class:`Leadership` says whether this process is the one leader (SQLite: always,
one process per file; PostgreSQL: an advisory lock on a connection of its own plus a lease row,
see :mod:`bot.store.leader`). The few other engine differences the table families need are
attributes of :class:`Tx`: the database's clock (:attr:`Tx.clock`), row locks a claim skips
(:attr:`Tx.skip_locked`), and a wake-up for other processes (:meth:`Tx.notify`).

Round trips: on PostgreSQL every statement is a round trip to the server, and admission's dozen
statements cost more in waiting than in work. :meth:`Tx.batch` runs a list of :class:`Query`
(a statement and how to read its rows) in order and hands back what each one read; PostgreSQL
sends them together (pipeline mode: one round trip), SQLite runs them one after the other (no
round trips to save). A caller sends together what does not depend on another's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

Row = Sequence[Any]  # a result row, read by position


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    """One statement for :meth:`Tx.batch` and how to read the rows it returns. A statement
    that returns none (a write without ``RETURNING``) is read as one row: ``(rows changed,)``.
    An empty ``sql`` is not sent: its reader gets no rows (an engine that knows the answer
    without asking, as SQLite's :meth:`Tx.now`)."""

    sql: str
    params: Sequence[Any]
    read: Callable[[list[Row]], T]


def fetch(tx: Tx, query: Query[T]) -> T:
    """Run one :class:`Query` on its own (the table families' plain functions use this, so a
    statement is written once whether it runs alone or in a batch)."""
    result: T = tx.batch([query])[0]
    return result


def nothing(rows: list[Row]) -> None:
    """The reader of a statement whose rows do not matter."""


def changed(rows: list[Row]) -> int:
    """The reader of a write without ``RETURNING``: how many rows it changed."""
    return int(rows[0][0])


def first_value(rows: list[Row]) -> Any:
    """The reader of a scalar: the first column of the first row, or None when there is none."""
    return rows[0][0] if rows else None


class Tx(Protocol):
    """Statements on the engine's connection, run synchronously where the connection lives.

    A function of a ``Tx`` is what :meth:`Engine.atomic` and :meth:`Engine.run` hand to the
    database in one hop: however many statements it runs, it costs one hand-off.
    """

    # An SQL expression: the database's clock in Unix seconds (a DOUBLE PRECISION), the one clock
    # every process agrees on; for leases, which hosts with skewed clocks must not misjudge.
    clock: str
    # Appended to a SELECT of rows a claim is about to update: rows another transaction has
    # locked are skipped, not waited for (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: nothing,
    # its one writer at a time already excludes a second claimer).
    skip_locked: str

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def first(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        ...

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement that changes rows; returns how many it changed."""
        ...

    def write_many(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        ...

    def batch(
        self, queries: Sequence[Query[Any]], *, serialize: Sequence[str] = (), notify: Sequence[str] = ()
    ) -> list[Any]:
        """Run ``queries`` in order and return what each one's reader made of its rows, in the
        same order. PostgreSQL sends them all in one round trip (pipeline mode); SQLite runs
        them one by one. ``serialize``: the keys of :meth:`serialize`, taken before the queries
        in the same round trip (this is the transaction's one serialize call); ``notify``:
        channels to :meth:`notify` (sent at commit, so they may come in any batch). An error
        in any query is raised here (the queries after it do not run) and, inside
        :meth:`Engine.atomic`, rolls the whole transaction back, as an error of a single
        statement does."""
        ...

    def now(self) -> Query[float]:
        """The time for timestamps that processes compare (quota windows, a job's created_at),
        in Unix seconds, as a query to put in a batch: PostgreSQL reads the database's clock,
        the one every host agrees on; SQLite (one process per file, on one host) answers with
        the host's clock."""
        ...

    def serialize(self, *keys: str) -> None:
        """Hold these keys until the transaction ends: another transaction naming one of them
        waits until this one has committed or rolled back, and its later reads see what this
        one wrote. Call it once per transaction, before the reads the keys protect (the keys
        are taken sorted; a second call could take them out of order). SQLite: nothing to do,
        its write transactions are serialized already; PostgreSQL: advisory locks."""
        ...

    def notify(self, channel: str) -> None:
        """Tell processes listening on ``channel`` that something changed, when (and only if)
        this transaction commits. SQLite: nothing (one process per file, which wakes its own
        loops in memory); PostgreSQL: NOTIFY."""
        ...


def member_key(user_id: int) -> str:
    """The key of one person's quotas (they count across servers: by user id alone)."""
    return f"member:{user_id}"


def pool_key(guild_id: int) -> str:
    """The key of one server's pool: its balance, allowance and alert."""
    return f"pool:{guild_id}"


class NotLeader(Exception):
    """This process no longer leads (its lease ran out, or another process took over): a
    leader-only write was refused and changed nothing."""


class StoreUnavailable(Exception):
    """The database cannot be reached right now (its connection was lost, or the engine is
    between reconnect attempts): nothing of the call ran, or a COMMIT's outcome is unknown.
    The caller decides: a member is told to try again shortly, a loop retries later."""


class Leadership(Protocol):
    """Whether this process is the one leader among the processes sharing the database.

    The loop driving it (:mod:`bot.pipeline.leader`) calls :meth:`tick` about every second:
    a follower campaigns, the leader renews its lease. Leader-only writes carry :meth:`fence`'s
    term, checked in their own transaction, so a leader that was frozen and replaced changes
    nothing when it wakes.
    """

    @property
    def is_leader(self) -> bool:
        """True while this process leads and its lease, by its own clock, has not run out."""
        ...

    async def tick(self) -> bool:
        """Campaign (a follower) or renew the lease (the leader); whether this process leads."""
        ...

    async def wait(self, seconds: float, on_notify: Callable[[], None]) -> None:
        """Sleep ``seconds``; while leading, call ``on_notify`` at once for each wake-up another
        process sent (:meth:`Tx.notify` on the jobs channel)."""
        ...

    def fence(self) -> int | None:
        """The term leader-only writes check (None: nothing to check, SQLite); raises
        :class:`NotLeader` when this process knows it no longer leads."""
        ...

    async def close(self) -> None:
        """Step down (the lock is released with its connection) and stop."""
        ...


class Engine(Protocol):
    """An open database: one hop per call, whatever the function runs."""

    def dialect(self, sql: str) -> str:
        """A migration statement (written for SQLite) as this engine needs it."""
        ...

    async def atomic(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` inside one transaction that holds the write lock from its first statement
        (SQLite: BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED, with :meth:`Tx.serialize` for the
        checks that must see no one else's writes).
        An exception from ``fn`` rolls the transaction back and reaches the caller."""
        ...

    async def run(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` outside any transaction: each statement commits on its own (reads)."""
        ...

    def leadership(self, holder: str, lease: float) -> Leadership:
        """This process's :class:`Leadership`: ``holder`` names it in the lease row (for people
        reading it), ``lease`` is how long the leader's renewal stays good (seconds)."""
        ...

    async def close(self) -> None: ...
