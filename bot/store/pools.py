"""Servers' rows and credit pools: the guilds row, the ledger, reservations and settlements.

A server's balance always equals the sum of its ledger: every function here that writes a
ledger row moves the balance in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from bot.jobs import Job, JobState, awaits_the_apis_end
from bot.store.engine import Query, Row, Tx, fetch, nothing, pool_key
from bot.store.records import Guild, LedgerRow

_COLUMNS: Final = (
    "guild_id, default_plan, balance, daily_allowance, low_balance_threshold, alert_channel_id, alert_armed,"
    " modlog_channel_id, showcase_channel_id, showcase_threshold"
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM guilds"
# Settings a moderator may change (the allow-list keeps the dynamic SET clause safe).
_SETTINGS: Final = frozenset(
    {
        "default_plan",
        "daily_allowance",
        "low_balance_threshold",
        "alert_channel_id",
        "alert_armed",
        "modlog_channel_id",
        "spoil_age_restricted",
        "showcase_channel_id",
        "showcase_threshold",
    }
)


def columns(alias: str) -> str:
    """The server row's columns as another module's query selects them from ``alias``."""
    return ", ".join(f"{alias}.{name}" for name in _COLUMNS.split(", "))


def guild_at(row: Sequence[Any], at: int) -> Guild | None:
    """The server's row read by :func:`columns` from position ``at`` of ``row`` (None: no row)."""
    return _guild(row[at:]) if row[at] is not None else None


def _guild(row: Sequence[Any]) -> Guild:
    return Guild(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], row[8], row[9])


def _first_guild(rows: list[Row]) -> Guild | None:
    return _guild(rows[0]) if rows else None


def get(tx: Tx, guild_id: int) -> Guild | None:
    return fetch(tx, get_query(guild_id))


def get_query(guild_id: int) -> Query[Guild | None]:
    return Query(f"{_SELECT} WHERE guild_id = ?", (guild_id,), _first_guild)


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
    before = get(tx, job.guild_id)
    assert before is not None
    tx.batch(reserve_queries(job, amount, time.time()))
    return alerted(tx, before, amount) is not None


# Admission sends the reservation in one batch with the job's INSERT, before it can know
# whether that INSERT took (an id collision inserts nothing and is retried): so each write
# names the job row it pays for, and changes nothing when that row is not this job's.
_THIS_JOB: Final = "EXISTS (SELECT 1 FROM jobs WHERE id = ? AND idempotency_key = ?)"
_RESERVE_LEDGER: Final = (
    "INSERT INTO ledger (guild_id, job_id, user_id, kind, amount, note, created_at)"
    f" SELECT ?, ?, ?, 'reserve', ?, NULL, ? WHERE {_THIS_JOB}"
)
# SET's expressions read the row as it was: "balance - ?" in the CASE is the new balance.
_RESERVE_BALANCE: Final = (
    "UPDATE guilds SET balance = balance - ?, alert_armed = CASE WHEN alert_armed = 1"
    " AND low_balance_threshold IS NOT NULL AND balance - ? < low_balance_threshold THEN 0"
    f" ELSE alert_armed END WHERE guild_id = ? AND {_THIS_JOB}"
)


def reserve_queries(job: Job, amount: int, now: float) -> list[Query[None]]:
    """Take a new job's estimate from its server's pool: the ledger row, then the balance and
    the low-balance alert in one UPDATE, as statements to run (or batch) after the job's
    INSERT. Nothing changes unless ``job``'s row is there. Then ask :func:`alerted`."""
    assert job.guild_id is not None
    this_job = (job.id, job.idempotency_key)
    return [
        Query(_RESERVE_LEDGER, (job.guild_id, job.id, job.user_id, -amount, now, *this_job), nothing),
        Query(_RESERVE_BALANCE, (amount, amount, job.guild_id, *this_job), nothing),
    ]


def alerted(tx: Tx, before: Guild, amount: int) -> Guild | None:
    """After :func:`reserve_queries`: the server's row when that reservation took the balance
    below the alert threshold while the alert was armed, else None.

    ``before`` is the row as read in this transaction, under its :func:`pool_key`: every
    change of the alert's settings holds that key, so only this reservation can have disarmed
    it. The row is read again only when the reservation may have crossed the line (a
    settlement elsewhere may have raised the balance meanwhile): most reservations cost no read.
    """
    threshold = before.low_balance_threshold
    if not before.alert_armed or threshold is None or before.balance - amount >= threshold:
        return None
    after = get(tx, before.guild_id)
    return after if after is not None and not after.alert_armed else None


def settle(tx: Tx, jobs: Sequence[Job], *, api_charges: dict[str, int] | None = None) -> None:
    """Settle ended pool-paid jobs once each: refund a job in full unless it completed, in
    which case the difference between the reservation and the API's reported cost goes back
    (or, if it cost more, is charged as far as the pool can pay; a pool never goes negative).

    A job cancelled here (or expired waiting) while the API was rendering it is not settled at
    that end: the API has no cancel call, runs it to the end and bills the account then. It is
    settled when the API's end is seen, with ``api_charges`` (job id -> what the API billed for it, 0 when it
    failed unbilled or never ran), so the pools pay what the account paid."""
    charges = api_charges or {}
    pooled = {
        job.id: job for job in jobs
        if job.guild_id is not None and (job.id in charges or not awaits_the_apis_end(job))
    }  # fmt: skip
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
    cost_of = {job.id: charges.get(job.id, _cost(job)) for job in pooled.values()}
    charged = {
        job.guild_id
        for job in pooled.values()
        if job.guild_id is not None and job.id in reserved and (cost_of[job.id] or 0) > reserved[job.id]
    }
    if charged:
        tx.serialize(*map(pool_key, charged))
    moved: dict[int, int] = {}  # server -> credits back to its pool in this call
    rows = []
    for job in pooled.values():
        if job.id not in reserved or job.guild_id is None:
            continue
        taken = reserved[job.id]
        cost = cost_of[job.id]
        if cost is None:
            back, note = taken, f"refunded: {job.outcome}"
        else:
            cost = taken if cost < 0 else cost
            back = taken - cost
            if back < 0:
                balance = int(
                    tx.scalar("SELECT balance FROM guilds WHERE guild_id = ?", (job.guild_id,)) or 0
                )
                back = -min(-back, balance + moved.get(job.guild_id, 0))
            note = f"settled at {cost} credits"
            if job.id in charges:
                note = f"{job.outcome}; the API billed {cost} credits"
        moved[job.guild_id] = moved.get(job.guild_id, 0) + back
        rows.append((job.guild_id, job.id, job.user_id, "settle", back, note))
    _ledger_rows(tx, rows, moved)


def _cost(job: Job) -> int | None:
    """What a job that ended on its own costs its pool: its API cost when it completed (-1:
    unknown, the reservation stands), nothing (None: a full refund) otherwise."""
    if job.outcome != "completed":
        return None
    return job.actual_credits if job.actual_credits is not None else -1


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
    return fetch(tx, member_spent_query(guild_id, user_id, since))


def member_spent_query(guild_id: int, user_id: int, since: float) -> Query[int]:
    return Query(
        "SELECT CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) FROM ledger l JOIN jobs j ON j.id = l.job_id"
        " WHERE l.guild_id = ? AND l.user_id = ? AND j.created_at > ? AND l.kind IN ('reserve', 'settle')",
        (guild_id, user_id, since),
        _spent,
    )


def _spent(rows: list[Row]) -> int:
    return -int(rows[0][0] or 0) if rows else 0


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


def spend_since(tx: Tx, guild_id: int, since: float) -> list[tuple[float, int]]:
    """(when, credits) the pool paid for jobs since ``since``: reservations and settlements."""
    rows = tx.rows(
        "SELECT created_at, -amount FROM ledger"
        " WHERE guild_id = ? AND created_at > ? AND kind IN ('reserve', 'settle')",
        (guild_id, since),
    )
    return [(float(at), int(amount)) for at, amount in rows]


def jobs_per_member(tx: Tx, guild_id: int, since: float, limit: int = 10) -> list[tuple[int, int]]:
    """(member, jobs) since ``since`` in this server, most first."""
    rows = tx.rows(
        "SELECT user_id, COUNT(*) FROM jobs WHERE guild_id = ? AND created_at > ? AND user_id IS NOT NULL"
        " GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT ?",
        (guild_id, since, limit),
    )
    return [(int(user), int(n)) for user, n in rows]
