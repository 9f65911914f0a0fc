"""Members' reports of results (table ``reports``): one per member and result."""

from __future__ import annotations

import time

from bot.store.engine import Tx


def add(tx: Tx, job_id: str, reporter_id: int) -> bool:
    """Record a report; False when this member had reported this result already."""
    return (
        tx.write(
            "INSERT INTO reports (job_id, reporter_id, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (job_id, reporter_id) DO NOTHING",
            (job_id, reporter_id, time.time()),
        )
        > 0
    )
