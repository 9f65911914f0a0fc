"""The leader's lease row (table ``leader``): taking over, renewing, and the fence.

One process among those sharing a PostgreSQL database leads: it runs what spends the API
account's budget or must run once (the scheduler, the poller, the relay subscriber). Being
leader is holding an advisory lock on a connection of its own (:class:`PostgresLeadership` in
:mod:`bot.store.postgres`); the lock alone is not enough, since a frozen process (SIGSTOP)
keeps its connection and so its lock. Hence this row: the leader renews ``renewed_at`` (the
database's clock) every tick; a follower that finds it older than the lease ends the holder's
connection and takes the lock. Each takeover adds one to ``term``, and every leader-only write
checks the term in its own transaction (:func:`check_term`), under the key :data:`TERM_KEY`
which a takeover holds too: a write either commits before the takeover (which then sees it)
or sees the new term and changes nothing.

SQLite has one process per file (:class:`SoleLeader`): always leader, nothing to fence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from bot.store.engine import Tx

NAME: Final = "leader"  # the one row's key
TERM_KEY: Final = "leader:term"  # held by a takeover and by every fenced write (Tx.serialize)
JOBS_CHANNEL: Final = "animate_jobs"  # the wake-up a follower sends after queueing work


def take_over(tx: Tx, holder: str, backend_pid: int | None) -> int:
    """Start a new term held by ``holder``; returns it. Call it holding the leader's lock."""
    tx.serialize(TERM_KEY)
    term = tx.scalar(
        "INSERT INTO leader (name, term, holder, backend_pid, renewed_at)"
        f" VALUES (?, 1, ?, ?, {tx.clock}) ON CONFLICT (name) DO UPDATE SET term = leader.term + 1,"
        " holder = excluded.holder, backend_pid = excluded.backend_pid, renewed_at = excluded.renewed_at"
        " RETURNING term",
        (NAME, holder, backend_pid),
    )
    return int(term)


def renew(tx: Tx, term: int, backend_pid: int | None) -> bool:
    """Renew the lease of ``term``; False when the term has moved on (another process leads)."""
    changed = tx.write(
        f"UPDATE leader SET renewed_at = {tx.clock} WHERE name = ? AND term = ? AND backend_pid = ?",
        (NAME, term, backend_pid),
    )
    return changed == 1


def lease(tx: Tx) -> tuple[int, int | None, float] | None:
    """The current term, its lock connection's pid, and how many seconds ago it was renewed."""
    row = tx.first(f"SELECT term, backend_pid, {tx.clock} - renewed_at FROM leader WHERE name = ?", (NAME,))
    if row is None:
        return None
    return int(row[0]), (int(row[1]) if row[1] is not None else None), float(row[2])


def current_term(tx: Tx) -> int | None:
    term = tx.scalar("SELECT term FROM leader WHERE name = ?", (NAME,))
    return int(term) if term is not None else None


def term_is(tx: Tx, term: int) -> bool:
    """Whether ``term`` still leads; a fenced write asks this after ``tx.serialize(TERM_KEY)``."""
    return current_term(tx) == term


class SoleLeader:
    """:class:`~bot.store.engine.Leadership` for SQLite: one process per file, always leader.

    No OS file lock keeps a second process out: the command line (``animate``) legitimately
    shares the bot's file for its own jobs (its scheduler serves only ``source='cli'``), and
    SQLite's own locking keeps every write whole. Two bots on one file are a misconfiguration
    this does not detect; several processes need PostgreSQL.
    """

    @property
    def is_leader(self) -> bool:
        return True

    async def tick(self) -> bool:
        return True

    async def wait(self, seconds: float, on_notify: Callable[[], None]) -> None:
        await asyncio.sleep(seconds)  # wake-ups come in memory (Pipeline.accepted)

    def fence(self) -> int | None:
        return None

    async def close(self) -> None:
        return None
