"""The API account's submitting pause (table ``submit_pause``), shared by every process.

The scheduler runs on the leader only, but ``/pool resume`` may be run in a server that another
process serves. So a pause only the operator can end (credits, key) is written here by the
leader; :func:`lift` clears it in the moderator's transaction and wakes the leader
(:meth:`Tx.notify` on the jobs channel), whose scheduler then finds the row gone and resumes.
Short pauses the bot ends by itself (a 429's wait, a backoff) stay in the leader's memory.
"""

from __future__ import annotations

from typing import Final

from bot.store.engine import Tx
from bot.store.leader import JOBS_CHANNEL

NAME: Final = "submitting"  # the one row's key


def record(tx: Tx, reason: str) -> None:
    tx.write(
        f"INSERT INTO submit_pause (name, reason, paused_at) VALUES (?, ?, {tx.clock})"
        " ON CONFLICT (name) DO UPDATE SET reason = excluded.reason, paused_at = excluded.paused_at",
        (NAME, reason),
    )


def reason(tx: Tx) -> str | None:
    """Why submitting is paused (None: it is not)."""
    found = tx.scalar("SELECT reason FROM submit_pause WHERE name = ?", (NAME,))
    return str(found) if found is not None else None


def clear(tx: Tx) -> None:
    tx.write("DELETE FROM submit_pause WHERE name = ?", (NAME,))


def lift(tx: Tx) -> str | None:
    """End the pause and wake the leader; returns why it was paused (None: it was not)."""
    was = reason(tx)
    if was is not None:
        clear(tx)
        tx.notify(JOBS_CHANNEL)
    return was
