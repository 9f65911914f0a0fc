"""A server's rules: members' overrides, blocks and quota resets; plans by role; channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from bot.store import pools
from bot.store.engine import Query, Row, Tx, fetch
from bot.store.records import MemberRule, Standing

_MEMBER_FIELDS: Final = frozenset({"plan", "blocked", "reason", "reset_at"})


def member_rule(tx: Tx, guild_id: int, user_id: int) -> MemberRule | None:
    return fetch(tx, member_rule_query(guild_id, user_id))


def member_rule_query(guild_id: int, user_id: int) -> Query[MemberRule | None]:
    return Query(
        "SELECT plan, blocked, reason, reset_at FROM member_rules WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
        _member_rule,
    )


def _member_rule(rows: list[Row]) -> MemberRule | None:
    return MemberRule(rows[0][0], bool(rows[0][1]), rows[0][2], rows[0][3]) if rows else None


def standing_query(guild_id: int, user_id: int, channel_id: int | None) -> Query[Standing]:
    """The member's rule, the server's row and the channel's verdict in ONE statement (what
    admission reads first: a statement saved is CPU saved here and in the database). A
    channel is closed when its rule says so, or when some channel is opened and it is not."""
    return Query(_STANDING, (guild_id, channel_id, guild_id, guild_id, user_id, guild_id), _standing)


_STANDING: Final = (
    "SELECT r.plan, r.blocked, r.reason, r.reset_at,"
    " (SELECT allowed FROM channel_rules WHERE guild_id = ? AND channel_id = ?),"
    f" EXISTS (SELECT 1 FROM channel_rules WHERE guild_id = ? AND allowed = 1), {pools.columns('g')}"
    " FROM (SELECT 1 AS one) o"
    " LEFT JOIN member_rules r ON r.guild_id = ? AND r.user_id = ?"
    " LEFT JOIN guilds g ON g.guild_id = ?"
)


def _standing(rows: list[Row]) -> Standing:
    row = rows[0]
    rule = MemberRule(row[0], bool(row[1]), row[2], row[3]) if row[1] is not None else None
    here, any_open = row[4], bool(row[5])
    channel_open = bool(here) if here is not None else not any_open
    return Standing(rule, pools.guild_at(row, 6), channel_open)


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


def reset_windows(tx: Tx, guild_id: int, user_id: int) -> None:
    """Start a member's quota windows afresh from now, on the clock admission's windows use
    (:meth:`Tx.now`: the database's), so a moderator's host with a skewed clock does not move it."""
    set_member_rule(tx, guild_id, user_id, reset_at=fetch(tx, tx.now()))


def role_plans(tx: Tx, guild_id: int) -> dict[int, str]:
    return fetch(tx, role_plans_query(guild_id))


def role_plans_query(guild_id: int) -> Query[dict[int, str]]:
    return Query("SELECT role_id, plan FROM role_plans WHERE guild_id = ?", (guild_id,), _role_plans)


def member_role_plans_query(guild_id: int, roles: Sequence[int]) -> Query[dict[int, str]]:
    """The plans of ``roles`` (a member's roles) on this server: the ones the plan is chosen from."""
    marks = ", ".join("?" * len(roles))
    return Query(
        f"SELECT role_id, plan FROM role_plans WHERE guild_id = ? AND role_id IN ({marks})",
        (guild_id, *roles),
        _role_plans,
    )


def _role_plans(rows: list[Row]) -> dict[int, str]:
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
    return fetch(tx, channel_rules_query(guild_id))


def channel_rules_query(guild_id: int) -> Query[dict[int, bool]]:
    return Query(
        "SELECT channel_id, allowed FROM channel_rules WHERE guild_id = ?", (guild_id,), _channel_rules
    )


def _channel_rules(rows: list[Row]) -> dict[int, bool]:
    return {int(r[0]): bool(r[1]) for r in rows}


def set_channel_rule(tx: Tx, guild_id: int, channel_id: int, allowed: bool) -> None:
    tx.write(
        "INSERT INTO channel_rules (guild_id, channel_id, allowed) VALUES (?, ?, ?)"
        " ON CONFLICT (guild_id, channel_id) DO UPDATE SET allowed = excluded.allowed",
        (guild_id, channel_id, int(allowed)),
    )


def spoiler_query(guild_id: int, channel_id: int | None, age_restricted: bool) -> Query[bool]:
    """Whether a result in this channel comes as a spoiler: the channel is one the moderators
    chose, or it is age-restricted and the server spoils those."""

    def spoiler(rows: list[Row]) -> bool:
        return bool(rows and (rows[0][0] or (age_restricted and rows[0][1])))

    return Query(
        "SELECT EXISTS (SELECT 1 FROM channel_spoilers WHERE channel_id = ?),"
        " COALESCE((SELECT spoil_age_restricted FROM guilds WHERE guild_id = ?), 0)",
        (channel_id if channel_id is not None else -1, guild_id),
        spoiler,
    )


def set_spoiler(tx: Tx, guild_id: int, channel_id: int, on: bool) -> None:
    if on:
        tx.write(
            "INSERT INTO channel_spoilers (guild_id, channel_id) VALUES (?, ?)"
            " ON CONFLICT (channel_id) DO NOTHING",
            (guild_id, channel_id),
        )
    else:
        tx.write("DELETE FROM channel_spoilers WHERE channel_id = ?", (channel_id,))
