"""A server's prompt filter rules (table ``prompt_rules``): words and patterns, numbered."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from bot.store.engine import Query, Row, Tx, fetch
from bot.store.records import PromptRule

_SELECT: Final = "SELECT id, kind, text, guild_id FROM prompt_rules"


def _rule(row: Sequence[Any]) -> PromptRule:
    return PromptRule(int(row[0]), str(row[1]), str(row[2]), int(row[3]))


def for_guild(tx: Tx, guild_id: int) -> list[PromptRule]:
    return fetch(tx, for_guild_query(guild_id))


def for_guild_query(guild_id: int) -> Query[list[PromptRule]]:
    return Query(f"{_SELECT} WHERE guild_id = ? ORDER BY id", (guild_id,), _rules)


def _rules(rows: list[Row]) -> list[PromptRule]:
    return [_rule(row) for row in rows]


def add(tx: Tx, guild_id: int, kind: str, text: str, actor_id: int) -> PromptRule | None:
    """The new rule, or None when the server has this very rule already."""
    row = tx.first(
        "INSERT INTO prompt_rules (guild_id, kind, text, added_by, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (guild_id, kind, text) DO NOTHING RETURNING id, kind, text, guild_id",
        (guild_id, kind, text, actor_id, time.time()),
    )
    return _rule(row) if row is not None else None


def remove(tx: Tx, guild_id: int, rule_id: int) -> PromptRule | None:
    """The removed rule, or None when the server has no rule of that number."""
    row = tx.first(f"{_SELECT} WHERE guild_id = ? AND id = ?", (guild_id, rule_id))
    if row is None:
        return None
    tx.write("DELETE FROM prompt_rules WHERE guild_id = ? AND id = ?", (guild_id, rule_id))
    return _rule(row)
