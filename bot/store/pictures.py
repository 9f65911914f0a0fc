"""Checked pictures kept for a while (table ``pictures``), keyed by the SHA-256 of their bytes."""

from __future__ import annotations

from bot.store.engine import Tx
from bot.store.records import Picture


def keep(tx: Tx, picture: Picture, now: float, *, max_bytes: int, max_age: float) -> None:
    """Keep ``picture`` (or mark it used again), then drop what is too old, and the least
    recently used while the total is over ``max_bytes`` (never the one just kept)."""
    tx.write(
        "INSERT INTO pictures (sha256, data, mime, size, used_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256) DO UPDATE SET used_at = excluded.used_at",
        (picture.sha256, picture.data, picture.mime, len(picture.data), now),
    )
    tx.write("DELETE FROM pictures WHERE used_at < ?", (now - max_age,))
    total = int(tx.scalar("SELECT COALESCE(CAST(SUM(size) AS BIGINT), 0) FROM pictures") or 0)
    if total <= max_bytes:
        return
    for sha256, size in tx.rows(
        "SELECT sha256, size FROM pictures WHERE sha256 <> ? ORDER BY used_at", (picture.sha256,)
    ):
        tx.write("DELETE FROM pictures WHERE sha256 = ?", (sha256,))
        total -= int(size)
        if total <= max_bytes:
            return


def get(tx: Tx, sha256: str, now: float) -> Picture | None:
    row = tx.first("SELECT data, mime FROM pictures WHERE sha256 = ?", (sha256,))
    if row is None:
        return None
    tx.write("UPDATE pictures SET used_at = ? WHERE sha256 = ?", (now, sha256))
    return Picture(sha256, bytes(row[0]), str(row[1]))
