"""Turns shared by every process of the bot (table ``turns``): at most one per name per window.

Discord allows one IDENTIFY per bucket every 5 s for the whole bot; processes started together
would each pace only their own shards and the loser of the race gets op 9. Taking the turn here
(on the database's clock, under the name's key) paces them all.
"""

from __future__ import annotations

from bot.store.engine import Tx


def take(tx: Tx, name: str, window: float) -> float:
    """Take ``name``'s turn if it is free (returns 0.0; the next one is free ``window`` seconds
    from now), else return the seconds until it is free and change nothing."""
    tx.serialize(f"turn:{name}")
    now = float(tx.scalar(f"SELECT {tx.clock}"))
    free_at = tx.scalar("SELECT free_at FROM turns WHERE name = ?", (name,))
    if free_at is not None and float(free_at) > now:
        return float(free_at) - now
    tx.write(
        "INSERT INTO turns (name, free_at) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET free_at = excluded.free_at",
        (name, now + window),
    )
    return 0.0
