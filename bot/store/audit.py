"""The moderators' audit trail: who changed what, and when."""

from __future__ import annotations

import time

from bot.store.engine import Tx
from bot.store.records import AuditRow


def record(tx: Tx, guild_id: int, actor_id: int, action: str, target: str | None, detail: str | None) -> None:
    tx.write(
        "INSERT INTO audit (guild_id, actor_id, action, target, detail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (guild_id, actor_id, action, target, detail, time.time()),
    )


def rows(tx: Tx, guild_id: int, limit: int) -> list[AuditRow]:
    found = tx.rows(
        "SELECT actor_id, action, target, detail, created_at FROM audit WHERE guild_id = ?"
        " ORDER BY id DESC LIMIT ?",
        (guild_id, limit),
    )
    return [AuditRow(*row) for row in found]
