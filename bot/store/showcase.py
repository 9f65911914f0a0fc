"""The showcase (table ``stars``; its channel and threshold are on the server's row): stars on
results, once each."""

from __future__ import annotations

import time

from bot.store.engine import Tx


def star(tx: Tx, job_id: str, user_id: int, on: bool) -> int:
    """Add (or take back) ``user_id``'s star on a result; the result's stars after it."""
    if on:
        tx.write(
            "INSERT INTO stars (job_id, user_id) VALUES (?, ?) ON CONFLICT (job_id, user_id) DO NOTHING",
            (job_id, user_id),
        )
    else:
        tx.write("DELETE FROM stars WHERE job_id = ? AND user_id = ?", (job_id, user_id))
    return int(tx.scalar("SELECT COUNT(*) FROM stars WHERE job_id = ?", (job_id,)) or 0)


def mark(tx: Tx, job_id: str) -> bool:
    """Mark a result showcased; False when it was already (the repost happens once)."""
    return (
        tx.write(
            "UPDATE jobs SET showcased_at = ? WHERE id = ? AND showcased_at IS NULL", (time.time(), job_id)
        )
        > 0
    )
