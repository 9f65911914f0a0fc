"""Servers' rows and credit pools: the guilds row, the ledger, reservations and settlements.

A server's balance always equals the sum of its ledger: every function here that writes a
ledger row moves the balance in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from bot.jobs import Job, JobState
from bot.store.engine import Tx, pool_key
from bot.store.records import Guild, LedgerRow

_SELECT: Final = (
    "SELECT guild_id, default_plan, balance, daily_allowance, low_balance_threshold, alert_channel_id,"
    " alert_armed FROM guilds"
)
# Settings a moderator may change (the allow-list keeps the dynamic SET clause safe).
_SETTINGS: Final = frozenset(
    {"default_plan", "daily_allowance", "low_balance_threshold", "alert_channel_id", "alert_armed"}
)


def _guild(row: Sequence[Any]) -> Guild:
    return Guild(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))


def get(tx: Tx, guild_id: int) -> Guild | None:
    row = tx.first(f"{_SELECT} WHERE guild_id = ?", (guild_id,))
    return _guild(row) if row is not None else None


def ensure(tx: Tx, guild_id: int, welcome_credits: int) -> Guild:
    """The server's row, created on first use with its welcome grant (inside a transaction)."""
    guild = get(tx, guild_id)  # the common case in one statement: admission runs this per job
    if guild is not None:
        return guild
    # Whoever creates the row grants the credits: the upsert tells, even across processes.
    created = tx.write(
        "INSERT INTO guilds (guild_id, created_at) VALUES (?, ?) ON CONFLICT (guild_id) DO NOTHING",
        (guild_id, time.time()),
    )
    if created and welcome_credits > 0:
        ledger(tx, guild_id, "grant", welcome_credits, note="welcome credits")
    guild = get(tx, guild_id)
    assert guild is not None
    return guild


def waiting(tx: Tx) -> list[Guild]:
    """Servers with queued jobs (to tell them the queue is paused)."""
    rows = tx.rows(
        f"{_SELECT} WHERE guild_id IN (SELECT guild_id FROM jobs WHERE state = ? AND guild_id IS NOT NULL)",
        (JobState.QUEUED.value,),
    )
    return [_guild(row) for row in rows]


def update(tx: Tx, guild_id: int, **settings: Any) -> None:
    unknown = set(settings) - _SETTINGS
    if unknown:
        raise ValueError(f"not a server setting: {', '.join(sorted(unknown))}")
    assignments = ", ".join(f"{name} = ?" for name in settings)
    tx.write(f"UPDATE guilds SET {assignments} WHERE guild_id = ?", (*settings.values(), guild_id))


def topup(tx: Tx, guild_id: int, amount: int, actor_id: int) -> Guild:
    """Add credits; re-arms the low-balance alert once the balance is back above it."""
    ledger(tx, guild_id, "topup", amount, user_id=actor_id, note=f"top-up by {actor_id}")
    tx.write(
        "UPDATE guilds SET alert_armed = 1 WHERE guild_id = ?"
        " AND (low_balance_threshold IS NULL OR balance >= low_balance_threshold)",
        (guild_id,),
    )
    guild = get(tx, guild_id)
    assert guild is not None
    return guild


def reserve(tx: Tx, job: Job, amount: int) -> bool:
    """Take a new job's estimate from its server's pool (inside admission's transaction).

    Returns True when this reservation took the balance below the alert threshold while
    the alert was armed: the caller alerts once, and the alert stays quiet until a top-up.
    """
    assert job.guild_id is not None
    ledger(tx, job.guild_id, "reserve", -amount, job_id=job.id, user_id=job.user_id)
    crossed = tx.write(
        "UPDATE guilds SET alert_armed = 0 WHERE guild_id = ? AND alert_armed = 1"
        " AND low_balance_threshold IS NOT NULL AND balance < low_balance_threshold",
        (job.guild_id,),
    )
    return crossed == 1


def settle(tx: Tx, jobs: Sequence[Job]) -> None:
    """Settle ended pool-paid jobs once each: refund a job in full unless it completed, in
    which case the difference between the reservation and the API's reported cost goes back
    (or, if it cost more, is charged as far as the pool can pay; a pool never goes negative)."""
    pooled = {job.id: job for job in jobs if job.guild_id is not None}
    if not pooled:
        return  # DM or CLI jobs: no pool involved
    marks = ", ".join("?" * len(pooled))
    reserved = {
        str(r[0]): int(r[1])
        for r in tx.rows(
            f"SELECT job_id, -amount FROM ledger WHERE kind = 'reserve' AND job_id IN ({marks})", list(pooled)
        )
    }
    # A job that cost more than its reservation is charged from the balance read here: hold
    # those pools, so no admission elsewhere spends the balance between the read and the write.
    charged = {
        job.guild_id
        for job in pooled.values()
        if job.guild_id is not None and job.id in reserved and job.outcome == "completed"
        and job.actual_credits is not None and job.actual_credits > reserved[job.id]
    }  # fmt: skip
    if charged:
        tx.serialize(*map(pool_key, charged))
    moved: dict[int, int] = {}  # server -> credits back to its pool in this call
    rows = []
    for job in pooled.values():
        if job.id not in reserved or job.guild_id is None:
            continue
        taken = reserved[job.id]
        if job.outcome == "completed":
            cost = job.actual_credits if job.actual_credits is not None else taken
            back = taken - cost
            if back < 0:
                balance = int(
                    tx.scalar("SELECT balance FROM guilds WHERE guild_id = ?", (job.guild_id,)) or 0
                )
                back = -min(-back, balance + moved.get(job.guild_id, 0))
            note = f"settled at {cost} credits"
        else:
            back = taken
            note = f"refunded: {job.outcome}"
        moved[job.guild_id] = moved.get(job.guild_id, 0) + back
        rows.append((job.guild_id, job.id, job.user_id, "settle", back, note))
    _ledger_rows(tx, rows, moved)


def refund_undelivered(tx: Tx, job: Job) -> None:
    """Give a completed job's charge back to its pool: nobody received the result."""
    if job.guild_id is None:
        return
    taken = tx.scalar(
        "SELECT CAST(-SUM(amount) AS BIGINT) FROM ledger WHERE job_id = ? AND kind IN ('reserve', 'settle')",
        (job.id,),
    )
    if taken:
        ledger(
            tx, job.guild_id, "undelivered", int(taken), job_id=job.id, user_id=job.user_id,
            note="refunded: the result could not be delivered",
        )  # fmt: skip


def member_spent(tx: Tx, guild_id: int, user_id: int, since: float) -> int:
    """Credits a member's jobs took from the pool since ``since``, net of settlements."""
    spent = tx.scalar(
        "SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM ledger l JOIN jobs j ON j.id = l.job_id"
        " WHERE l.guild_id = ? AND l.user_id = ? AND j.created_at > ? AND l.kind IN ('reserve', 'settle')",
        (guild_id, user_id, since),
    )
    return -int(spent or 0)


def ledger(
    tx: Tx, guild_id: int, kind: str, amount: int, *, job_id: str | None = None,
    user_id: int | None = None, note: str | None = None,
) -> None:  # fmt: skip
    """One ledger row and the balance it moves, together (inside the caller's transaction)."""
    _ledger_rows(tx, [(guild_id, job_id, user_id, kind, amount, note)], {guild_id: amount})


def _ledger_rows(
    tx: Tx, rows: Sequence[tuple[int, str | None, int | None, str, int, str | None]], moved: dict[int, int]
) -> None:
    """Ledger rows (server, job, member, kind, amount, note) and, per server, the sum they
    move its balance by: the balance and the ledger change together."""
    now = time.time()
    tx.write_many(
        "INSERT INTO ledger (guild_id, job_id, user_id, kind, amount, note, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(*row, now) for row in rows],
    )
    for guild_id, amount in moved.items():
        tx.write("UPDATE guilds SET balance = balance + ? WHERE guild_id = ?", (amount, guild_id))


def ledger_sum(tx: Tx, guild_id: int) -> int:
    total = tx.scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE guild_id = ?", (guild_id,)
    )
    return int(total)


def ledger_rows(tx: Tx, guild_id: int, limit: int) -> list[LedgerRow]:
    rows = tx.rows(
        "SELECT kind, amount, job_id, user_id, note, created_at FROM ledger WHERE guild_id = ?"
        " ORDER BY id DESC LIMIT ?",
        (guild_id, limit),
    )
    return [LedgerRow(*row) for row in rows]
