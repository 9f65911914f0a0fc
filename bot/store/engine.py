"""The seam between the store and a database engine.

Everything engine-specific sits behind these two small interfaces: opening the connection and
its settings, the placeholder style, the hop to the thread (or socket) that talks to the
database, and how a transaction takes the write lock. The table-family modules
(:mod:`bot.store.jobs`, :mod:`~bot.store.pools`, :mod:`~bot.store.rules`,
:mod:`~bot.store.audit`) write portable SQL with ``?`` placeholders and run it through a
:class:`Tx`; an engine whose driver uses another style (PostgreSQL's ``$1`` or ``%s``)
rewrites them in its ``Tx``. A second engine is one new module implementing these, as
:mod:`bot.store.sqlite` does for SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Row = Sequence[Any]  # a result row, read by position


class Tx(Protocol):
    """Statements on the engine's connection, run synchronously where the connection lives.

    A function of a ``Tx`` is what :meth:`Engine.atomic` and :meth:`Engine.run` hand to the
    database in one hop: however many statements it runs, it costs one hand-off.
    """

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


class Engine(Protocol):
    """An open database: one hop per call, whatever the function runs."""

    async def atomic(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` inside one transaction that holds the write lock from its first statement
        (SQLite: BEGIN IMMEDIATE), so its checks and its writes see no one else's writes.
        An exception from ``fn`` rolls the transaction back and reaches the caller."""
        ...

    async def run(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` outside any transaction: each statement commits on its own (reads, and
        statements that must run outside a transaction, such as creating the migrations table)."""
        ...

    async def close(self) -> None: ...
