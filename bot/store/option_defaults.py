"""Default /animate options (table ``option_defaults``): per channel and per member."""

from __future__ import annotations

import time
from typing import Final

from bot.store.engine import Query, Row, Tx, fetch
from bot.store.records import OptionDefaults

CHANNEL: Final = "channel"
MEMBER: Final = "member"
_FIELDS: Final = ("duration", "aspect_ratio", "motion", "version")


def get(tx: Tx, scope: str, scope_id: int) -> OptionDefaults:
    row = tx.first(
        f"SELECT {', '.join(_FIELDS)} FROM option_defaults WHERE scope = ? AND scope_id = ?",
        (scope, scope_id),
    )
    return OptionDefaults(*row) if row is not None else OptionDefaults()


def for_request(tx: Tx, user_id: int, channel_id: int | None) -> tuple[OptionDefaults, OptionDefaults]:
    """The member's own defaults and the channel's, in one read."""
    return fetch(tx, for_request_query(user_id, channel_id))


def for_request_query(user_id: int, channel_id: int | None) -> Query[tuple[OptionDefaults, OptionDefaults]]:
    return Query(
        f"SELECT scope, {', '.join(_FIELDS)} FROM option_defaults"
        " WHERE (scope = ? AND scope_id = ?) OR (scope = ? AND scope_id = ?)",
        (MEMBER, user_id, CHANNEL, channel_id if channel_id is not None else -1),
        _mine_and_channel,
    )


def _mine_and_channel(rows: list[Row]) -> tuple[OptionDefaults, OptionDefaults]:
    found = {str(row[0]): OptionDefaults(*row[1:]) for row in rows}
    return found.get(MEMBER, OptionDefaults()), found.get(CHANNEL, OptionDefaults())


def merge(tx: Tx, scope: str, scope_id: int, changes: OptionDefaults, actor_id: int) -> OptionDefaults:
    """Set the options given in ``changes`` (None leaves one as it was); the result."""
    tx.write(
        f"INSERT INTO option_defaults (scope, scope_id, {', '.join(_FIELDS)}, updated_by, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, scope_id) DO UPDATE SET "
        + ", ".join(f"{f} = COALESCE(excluded.{f}, option_defaults.{f})" for f in _FIELDS)
        + ", updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        (scope, scope_id, changes.duration, changes.aspect_ratio, changes.motion, changes.version,
         actor_id, time.time()),
    )  # fmt: skip
    return get(tx, scope, scope_id)


def clear(tx: Tx, scope: str, scope_id: int) -> bool:
    return tx.write("DELETE FROM option_defaults WHERE scope = ? AND scope_id = ?", (scope, scope_id)) > 0
