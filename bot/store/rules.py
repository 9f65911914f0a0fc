"""A server's rules: members' overrides, blocks and quota resets; plans by role; channels."""

from __future__ import annotations

from typing import Any, Final

from bot.store.engine import Tx
from bot.store.records import MemberRule

_MEMBER_FIELDS: Final = frozenset({"plan", "blocked", "reason", "reset_at"})


def member_rule(tx: Tx, guild_id: int, user_id: int) -> MemberRule | None:
    row = tx.first(
        "SELECT plan, blocked, reason, reset_at FROM member_rules WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    )
    return MemberRule(row[0], bool(row[1]), row[2], row[3]) if row else None


def set_member_rule(tx: Tx, guild_id: int, user_id: int, **fields: Any) -> None:
    """Set some of one member's rule (override, block, quota reset), creating the row if need be;
    the fields not given keep their values (or defaults)."""
    if not fields or set(fields) - _MEMBER_FIELDS:
        raise ValueError("not a member rule field")
    names = ", ".join(fields)
    updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
    tx.write(
        f"INSERT INTO member_rules (guild_id, user_id, {names}) VALUES (?, ?{', ?' * len(fields)})"
        f" ON CONFLICT (guild_id, user_id) DO UPDATE SET {updates}",
        (guild_id, user_id, *fields.values()),
    )


def role_plans(tx: Tx, guild_id: int) -> dict[int, str]:
    rows = tx.rows("SELECT role_id, plan FROM role_plans WHERE guild_id = ?", (guild_id,))
    return {int(r[0]): str(r[1]) for r in rows}


def set_role_plan(tx: Tx, guild_id: int, role_id: int, plan: str | None) -> None:
    """Map a role to a plan; None removes the mapping."""
    if plan is None:
        tx.write("DELETE FROM role_plans WHERE guild_id = ? AND role_id = ?", (guild_id, role_id))
        return
    tx.write(
        "INSERT INTO role_plans (guild_id, role_id, plan) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, role_id) DO UPDATE SET plan = excluded.plan",
        (guild_id, role_id, plan),
    )


def channel_rules(tx: Tx, guild_id: int) -> dict[int, bool]:
    rows = tx.rows("SELECT channel_id, allowed FROM channel_rules WHERE guild_id = ?", (guild_id,))
    return {int(r[0]): bool(r[1]) for r in rows}


def set_channel_rule(tx: Tx, guild_id: int, channel_id: int, allowed: bool) -> None:
    tx.write(
        "INSERT INTO channel_rules (guild_id, channel_id, allowed) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, channel_id) DO UPDATE SET allowed = excluded.allowed",
        (guild_id, channel_id, int(allowed)),
    )
