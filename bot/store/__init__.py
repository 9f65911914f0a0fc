"""The job store: every SQL statement of the project lives in this module.

SQLite through aiosqlite, in WAL mode with foreign keys on. The SQL is kept portable
(no SQLite-only syntax in the queries: ``?`` placeholders are the only dialect detail) so a
PostgreSQL backend can follow with the same interface.

State changes are compare-and-set (``UPDATE ... WHERE id = ? AND state = ?``), checked against
the state machine in :mod:`bot.jobs` first: an illegal move raises instead of writing, and two
paths racing to apply the same move (a webhook and the poller) cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import aiosqlite

from bot.jobs import IN_FLIGHT, IllegalTransition, Job, JobOptions, JobState, can_transition

log = logging.getLogger(__name__)

# Each migration is a list of statements applied in one transaction; append, never edit.
MIGRATIONS: Final[list[list[str]]] = [
    [
        """
        CREATE TABLE jobs (
            id                TEXT PRIMARY KEY,
            idempotency_key   TEXT NOT NULL UNIQUE,
            api_job_id        TEXT UNIQUE,
            state             TEXT NOT NULL,
            source            TEXT NOT NULL,
            user_id           BIGINT,
            guild_id          BIGINT,
            channel_id        BIGINT,
            interaction_id    BIGINT,
            interaction_token TEXT,
            token_expires_at  DOUBLE PRECISION,
            image_ref         TEXT NOT NULL,
            prompt            TEXT NOT NULL,
            duration          INTEGER NOT NULL,
            aspect_ratio      TEXT NOT NULL,
            motion            TEXT NOT NULL,
            version           TEXT NOT NULL,
            estimated_credits INTEGER NOT NULL,
            actual_credits    INTEGER,
            result_url        TEXT,
            error             TEXT,
            created_at        DOUBLE PRECISION NOT NULL,
            updated_at        DOUBLE PRECISION NOT NULL,
            submitted_at      DOUBLE PRECISION,
            completed_at      DOUBLE PRECISION,
            delivered_at      DOUBLE PRECISION
        )
        """,
        "CREATE INDEX jobs_by_state ON jobs (state, updated_at)",
        "CREATE INDEX jobs_by_user ON jobs (user_id, created_at)",
    ],
    [
        # Where the status card lives, so it can be edited with the bot's own token after the
        # 15-minute interaction token has expired; and the upload limit of that interaction.
        "ALTER TABLE jobs ADD COLUMN status_channel_id BIGINT",
        "ALTER TABLE jobs ADD COLUMN status_message_id BIGINT",
        "ALTER TABLE jobs ADD COLUMN upload_limit BIGINT",
        # How the job ended (completed, failed, cancelled, expired): kept after 'delivered' so
        # quotas count only what the person was actually served.
        "ALTER TABLE jobs ADD COLUMN outcome TEXT",
        "ALTER TABLE jobs ADD COLUMN delivery_note TEXT",
        "CREATE INDEX jobs_by_api_id ON jobs (api_job_id)",
    ],
    [
        # One row per server: its default plan, its credit pool and the pool's alert settings.
        # The balance always equals the sum of the server's ledger (both change together).
        """
        CREATE TABLE guilds (
            guild_id              BIGINT PRIMARY KEY,
            default_plan          TEXT,
            balance               BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
            daily_allowance       BIGINT,
            low_balance_threshold BIGINT,
            alert_channel_id      BIGINT,
            alert_armed           INTEGER NOT NULL DEFAULT 1,
            created_at            DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE TABLE role_plans (guild_id BIGINT NOT NULL, role_id BIGINT NOT NULL, plan TEXT NOT NULL,"
        " PRIMARY KEY (guild_id, role_id))",
        """
        CREATE TABLE member_rules (
            guild_id  BIGINT NOT NULL,
            user_id   BIGINT NOT NULL,
            plan      TEXT,
            blocked   INTEGER NOT NULL DEFAULT 0,
            reason    TEXT,
            reset_at  DOUBLE PRECISION,
            PRIMARY KEY (guild_id, user_id)
        )
        """,
        "CREATE TABLE channel_rules (guild_id BIGINT NOT NULL, channel_id BIGINT NOT NULL,"
        " allowed INTEGER NOT NULL, PRIMARY KEY (guild_id, channel_id))",
        """
        CREATE TABLE ledger (
            id          INTEGER PRIMARY KEY,
            guild_id    BIGINT NOT NULL,
            job_id      TEXT REFERENCES jobs (id),
            user_id     BIGINT,
            kind        TEXT NOT NULL,
            amount      BIGINT NOT NULL,
            note        TEXT,
            created_at  DOUBLE PRECISION NOT NULL
        )
        """,
        # A job is reserved once and settled once, whatever path reports its end.
        "CREATE UNIQUE INDEX ledger_once ON ledger (job_id, kind) WHERE job_id IS NOT NULL",
        "CREATE INDEX ledger_by_guild ON ledger (guild_id, created_at)",
        "CREATE INDEX ledger_by_member ON ledger (guild_id, user_id, created_at)",
        """
        CREATE TABLE audit (
            id          INTEGER PRIMARY KEY,
            guild_id    BIGINT NOT NULL,
            actor_id    BIGINT NOT NULL,
            action      TEXT NOT NULL,
            target      TEXT,
            detail      TEXT,
            created_at  DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX audit_by_guild ON audit (guild_id, created_at)",
    ],
    [
        # When a result was first sent toward Discord: a restart that finds it set looks for
        # the message before sending again, so a crash between sending and recording the
        # delivery does not post the result twice.
        "ALTER TABLE jobs ADD COLUMN delivery_started_at DOUBLE PRECISION",
    ],
    [
        # The API has no cancel call: a job cancelled while it ran keeps one of the account's
        # slots until the API ends it. This records when it did, so the scheduler counts it.
        "ALTER TABLE jobs ADD COLUMN api_ended_at DOUBLE PRECISION",
        "CREATE INDEX jobs_cancelled_at_api ON jobs (submitted_at)"
        " WHERE state = 'cancelled' AND api_job_id IS NOT NULL AND api_ended_at IS NULL",
    ],
    [
        # A member's jobs in flight (the concurrency count), straight from an index: with only
        # (user_id, created_at) the count walked the member's whole history (the admission
        # benchmark: 5.8x slower at 10^6 rows; 1.06x with this index).
        "CREATE INDEX jobs_by_user_state ON jobs (user_id, state, created_at)",
    ],
    [
        # The UNIQUE constraint on api_job_id already indexes it; the copy only cost every
        # insert and every submit one more page write.
        "DROP INDEX jobs_by_api_id",
    ],
]

_JOB_COLUMNS: Final = (
    "id, idempotency_key, api_job_id, state, source, user_id, guild_id, channel_id, interaction_id, "
    "interaction_token, token_expires_at, image_ref, prompt, duration, aspect_ratio, motion, version, "
    "estimated_credits, actual_credits, result_url, error, created_at, updated_at, submitted_at, "
    "completed_at, delivered_at, status_channel_id, status_message_id, upload_limit, outcome, delivery_note"
)
# What a read returns: the inserted columns and those only later writes set.
_READ_COLUMNS: Final = _JOB_COLUMNS + ", delivery_started_at"
# Columns a state transition may set besides the state itself (the allow-list keeps the
# dynamic SET clause free of anything a caller could inject).
_TRANSITION_FIELDS: Final = frozenset(
    {
        "api_job_id", "actual_credits", "result_url", "error", "submitted_at", "completed_at", "delivered_at",
        "delivery_note",
    }
)  # fmt: skip
# The end a state stands for, written with the move so it survives 'delivered'.
_OUTCOME_OF: Final = {
    JobState.COMPLETED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.EXPIRED: "expired",
}
_ID_ALPHABET: Final = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/1/i/l/o: ids are typed by people
_ID_LENGTH: Final = 8


def new_job_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a caller knows when a job is accepted."""

    source: str
    image_ref: str
    options: JobOptions
    user_id: int | None = None
    guild_id: int | None = None
    channel_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: float | None = None
    upload_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Guild:
    guild_id: int
    default_plan: str | None
    balance: int
    daily_allowance: int | None
    low_balance_threshold: int | None
    alert_channel_id: int | None
    alert_armed: bool


@dataclass(frozen=True, slots=True)
class MemberRule:
    plan: str | None
    blocked: bool
    reason: str | None
    reset_at: float | None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    kind: str
    amount: int
    job_id: str | None
    user_id: int | None
    note: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class AuditRow:
    actor_id: int
    action: str
    target: str | None
    detail: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Usage:
    """One person's jobs in the quota windows. Ended jobs that were not served do not count."""

    active: int  # not yet ended
    in_minute: int
    in_day: int


T = TypeVar("T")


class Tx:
    """The statements admission and completion need, run synchronously on the database thread.

    A hop to aiosqlite's thread (a thread hand-off and a future) costs more than a statement, and
    admitting a job takes a dozen statements. :meth:`Store.atomic` runs a function of a ``Tx``
    inside one IMMEDIATE transaction in ONE hop; :class:`Store`'s async methods that share these
    statements call them the same way, one hop each, so each statement is written once.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sql, params).fetchall()

    def first(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return self._conn.execute(sql, params).fetchone()  # type: ignore[no-any-return]

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.first(sql, params)
        return row[0] if row else None

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    # --- jobs --------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        row = self.first(f"SELECT {_READ_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(row) if row is not None else None

    def get_job_by_api_id(self, api_job_id: str) -> Job | None:
        row = self.first(f"SELECT {_READ_COLUMNS} FROM jobs WHERE api_job_id = ?", (api_job_id,))
        return _job_from_row(row) if row is not None else None

    def jobs_by_api_ids(self, api_job_ids: Collection[str]) -> dict[str, Job]:
        if not api_job_ids:
            return {}
        marks = ", ".join("?" * len(api_job_ids))
        rows = self.rows(f"SELECT {_READ_COLUMNS} FROM jobs WHERE api_job_id IN ({marks})", list(api_job_ids))
        return {job.api_job_id: job for job in map(_job_from_row, rows) if job.api_job_id is not None}

    def insert_job(self, new: NewJob, now: float) -> Job:
        opts = new.options
        for _ in range(5):  # an id collision is astronomically rare; retry rather than fail
            job_id, key = new_job_id(), str(uuid.uuid4())
            try:
                self.write(
                    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 31)})",
                    (
                        job_id, key, None, JobState.QUEUED.value, new.source,
                        new.user_id, new.guild_id, new.channel_id, new.interaction_id,
                        new.interaction_token, new.token_expires_at, new.image_ref, opts.prompt,
                        opts.duration, opts.aspect_ratio, opts.motion, opts.version,
                        opts.estimated_credits, None, None, None, now, now, None, None, None,
                        None, None, new.upload_limit, None, None,
                    ),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                continue
            # Built from what was written, not read back.
            return Job(
                id=job_id, idempotency_key=key, state=JobState.QUEUED, source=new.source,
                image_ref=new.image_ref, options=opts, estimated_credits=opts.estimated_credits,
                created_at=now, updated_at=now, user_id=new.user_id, guild_id=new.guild_id,
                channel_id=new.channel_id, interaction_id=new.interaction_id,
                interaction_token=new.interaction_token, token_expires_at=new.token_expires_at,
                upload_limit=new.upload_limit,
            )  # fmt: skip
        raise RuntimeError("could not allocate a unique job id")

    def transition(
        self, job_id: str, target: JobState, expected: JobState | None, fields: dict[str, Any]
    ) -> Job:
        """The compare-and-set move (see :meth:`Store.transition`); an end also settles the pool,
        so call it for an end inside a transaction."""
        current = expected
        if current is None:
            job = self.get_job(job_id)
            if job is None:
                raise KeyError(job_id)
            current = job.state
        sql, params, _ = _move(job_id, current, target, fields, time.time())
        # RETURNING (SQLite 3.35+, PostgreSQL): the updated row in the same statement.
        row = self.first(f"{sql} RETURNING {_READ_COLUMNS}", params)
        if row is None:
            now = self.get_job(job_id)
            raise IllegalTransition(job_id, now.state if now else None, target)
        moved = _job_from_row(row)
        if target in _OUTCOME_OF:
            self._settle_all([moved])
        return moved

    def end_jobs(self, moves: Sequence[tuple[Job, JobState, dict[str, Any]]]) -> list[Job | None]:
        """Move jobs read in THIS transaction to their ends and settle their pools together.

        The set-based twin of :meth:`transition` for a group of webhook reports: the rows are
        known (read in this transaction), so the updated jobs are built, not read back, and the
        pools are settled with one read and one write per server. None where a job's state had
        already moved (compare-and-set, as ever).
        """
        now = time.time()
        ended: list[Job | None] = []
        for job, target, fields in moves:
            if target not in _OUTCOME_OF:
                raise IllegalTransition(job.id, job.state, target)
            sql, params, values = _move(job.id, job.state, target, fields, now)
            changed = self.write(sql, params)
            ended.append(
                dataclasses.replace(job, state=target, updated_at=now, **values) if changed else None
            )
        self._settle_all([job for job in ended if job is not None])
        return ended

    def mark_undeliverable(self, job: Job, note: str) -> Job:
        done = self.transition(
            job.id, JobState.DELIVERED, job.state, {"delivered_at": time.time(), "delivery_note": note}
        )
        if job.outcome == "completed" and job.guild_id is not None:
            taken = self.scalar(
                "SELECT -SUM(amount) FROM ledger WHERE job_id = ? AND kind IN ('reserve', 'settle')",
                (job.id,),
            )
            if taken:
                self.ledger(
                    job.guild_id, "undelivered", taken, job_id=job.id, user_id=job.user_id,
                    note="refunded: the result could not be delivered",
                )  # fmt: skip
        return done

    def mark_api_ended(self, job_id: str) -> None:
        self.write(
            "UPDATE jobs SET api_ended_at = ? WHERE id = ? AND api_ended_at IS NULL", (time.time(), job_id)
        )

    def _settle_all(self, jobs: Sequence[Job]) -> None:
        """Settle ended pool-paid jobs once each: refund a job in full unless it completed, in
        which case the difference between the reservation and the API's reported cost goes back
        (or, if it cost more, is charged as far as the pool can pay; a pool never goes negative)."""
        pooled = {job.id: job for job in jobs if job.guild_id is not None}
        if not pooled:
            return  # DM or CLI jobs: no pool involved
        marks = ", ".join("?" * len(pooled))
        reserved = {
            str(r[0]): int(r[1])
            for r in self.rows(
                f"SELECT job_id, -amount FROM ledger WHERE kind = 'reserve' AND job_id IN ({marks})",
                list(pooled),
            )
        }
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
                        self.scalar("SELECT balance FROM guilds WHERE guild_id = ?", (job.guild_id,)) or 0
                    )
                    back = -min(-back, balance + moved.get(job.guild_id, 0))
                note = f"settled at {cost} credits"
            else:
                back = taken
                note = f"refunded: {job.outcome}"
            moved[job.guild_id] = moved.get(job.guild_id, 0) + back
            rows.append((job.guild_id, job.id, job.user_id, "settle", back, note))
        self._ledger_rows(rows, moved)

    def ledger(
        self, guild_id: int, kind: str, amount: int, *, job_id: str | None = None,
        user_id: int | None = None, note: str | None = None,
    ) -> None:  # fmt: skip
        """One ledger row and the balance it moves, together (inside the caller's transaction)."""
        self._ledger_rows([(guild_id, job_id, user_id, kind, amount, note)], {guild_id: amount})

    def _ledger_rows(
        self, rows: Sequence[tuple[int, str | None, int | None, str, int, str | None]], moved: dict[int, int]
    ) -> None:
        """Ledger rows (server, job, member, kind, amount, note) and, per server, the sum they
        move its balance by: the balance and the ledger change together."""
        now = time.time()
        self._conn.executemany(
            "INSERT INTO ledger (guild_id, job_id, user_id, kind, amount, note, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*row, now) for row in rows],
        )
        for guild_id, amount in moved.items():
            self.write("UPDATE guilds SET balance = balance + ? WHERE guild_id = ?", (amount, guild_id))

    # --- servers -----------------------------------------------------------------------------

    def get_guild(self, guild_id: int) -> Guild | None:
        row = self.first(
            "SELECT guild_id, default_plan, balance, daily_allowance, low_balance_threshold,"
            " alert_channel_id, alert_armed FROM guilds WHERE guild_id = ?",
            (guild_id,),
        )
        if row is None:
            return None
        return Guild(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))

    def ensure_guild(self, guild_id: int, welcome_credits: int) -> Guild:
        """The server's row, created on first use with its welcome grant (inside a transaction)."""
        guild = self.get_guild(guild_id)
        if guild is not None:
            return guild
        self.write("INSERT INTO guilds (guild_id, created_at) VALUES (?, ?)", (guild_id, time.time()))
        if welcome_credits > 0:
            self.ledger(guild_id, "grant", welcome_credits, note="welcome credits")
        guild = self.get_guild(guild_id)
        assert guild is not None
        return guild

    def reserve(self, job: Job, amount: int) -> bool:
        """Take a new job's estimate from its server's pool (inside admission's transaction).

        Returns True when this reservation took the balance below the alert threshold while
        the alert was armed: the caller alerts once, and the alert stays quiet until a top-up.
        """
        assert job.guild_id is not None
        self.ledger(job.guild_id, "reserve", -amount, job_id=job.id, user_id=job.user_id)
        crossed = self.write(
            "UPDATE guilds SET alert_armed = 0 WHERE guild_id = ? AND alert_armed = 1"
            " AND low_balance_threshold IS NOT NULL AND balance < low_balance_threshold",
            (job.guild_id,),
        )
        return crossed == 1

    def member_spent(self, guild_id: int, user_id: int, since: float) -> int:
        """Credits a member's jobs took from the pool since ``since``, net of settlements."""
        spent = self.scalar(
            "SELECT COALESCE(SUM(l.amount), 0) FROM ledger l JOIN jobs j ON j.id = l.job_id"
            " WHERE l.guild_id = ? AND l.user_id = ? AND j.created_at > ?"
            " AND l.kind IN ('reserve', 'settle')",
            (guild_id, user_id, since),
        )
        return -int(spent or 0)

    def member_rule(self, guild_id: int, user_id: int) -> MemberRule | None:
        row = self.first(
            "SELECT plan, blocked, reason, reset_at FROM member_rules WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        )
        return MemberRule(row[0], bool(row[1]), row[2], row[3]) if row else None

    def role_plans(self, guild_id: int) -> dict[int, str]:
        rows = self.rows("SELECT role_id, plan FROM role_plans WHERE guild_id = ?", (guild_id,))
        return {int(r[0]): str(r[1]) for r in rows}

    def channel_rules(self, guild_id: int) -> dict[int, bool]:
        rows = self.rows("SELECT channel_id, allowed FROM channel_rules WHERE guild_id = ?", (guild_id,))
        return {int(r[0]): bool(r[1]) for r in rows}

    # --- quotas ------------------------------------------------------------------------------
    # A job counts toward a person's windows unless it ended without being served (failed,
    # cancelled or expired): those are "given back". Run these in the same transaction as
    # insert_job so two commands at once cannot both pass a limit.

    _COUNTED: Final = "(outcome IS NULL OR outcome = 'completed')"

    def usage(self, user_id: int, minute_since: float, day_since: float) -> Usage:
        in_flight = [s.value for s in IN_FLIGHT]
        marks = ", ".join("?" * len(in_flight))
        # One statement: the day window from the (user_id, created_at) index, plus jobs in
        # flight since before the day window, which still hold a slot.
        row = self.first(
            f"SELECT SUM(CASE WHEN state IN ({marks}) THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN created_at > ? THEN 1 ELSE 0 END), COUNT(*), "
            f"(SELECT COUNT(*) FROM jobs WHERE user_id = ? AND created_at <= ? AND state IN ({marks})) "
            f"FROM jobs WHERE user_id = ? AND created_at > ? AND {self._COUNTED}",
            (*in_flight, minute_since, user_id, day_since, *in_flight, user_id, day_since),
        )
        active, minute, day, older = (int(v or 0) for v in row) if row else (0, 0, 0, 0)
        return Usage(active=active + older, in_minute=minute, in_day=day)

    def nth_counted_since(self, user_id: int, since: float, n: int) -> float | None:
        """created_at of the n-th (0-based) oldest counted job after ``since``: when a slot frees."""
        created = self.scalar(
            f"SELECT created_at FROM jobs WHERE user_id = ? AND created_at > ? AND {self._COUNTED} "
            "ORDER BY created_at LIMIT 1 OFFSET ?",
            (user_id, since, n),
        )
        return float(created) if created is not None else None


def _move(
    job_id: str, current: JobState, target: JobState, fields: dict[str, Any], now: float
) -> tuple[str, list[Any], dict[str, Any]]:
    """The compare-and-set UPDATE moving a job from ``current`` to ``target`` (statement,
    parameters, and the columns it sets besides state and updated_at); raises before any write
    if the move is illegal or a field is not one a transition may set."""
    unknown = set(fields) - _TRANSITION_FIELDS
    if unknown:
        raise ValueError(f"not a transition field: {', '.join(sorted(unknown))}")
    if not can_transition(current, target):
        raise IllegalTransition(job_id, current, target)
    values = {**fields, "outcome": _OUTCOME_OF[target]} if target in _OUTCOME_OF else dict(fields)
    assignments = "".join(f", {name} = ?" for name in values)
    sql = f"UPDATE jobs SET state = ?, updated_at = ?{assignments} WHERE id = ? AND state = ?"
    return sql, [target.value, now, *values.values(), job_id, current.value], values


def _in_transaction(fn: Callable[[Tx], T], tx: Tx) -> T:
    tx.write("BEGIN IMMEDIATE")
    try:
        result = fn(tx)
    except BaseException:
        tx.write("ROLLBACK")
        raise
    tx.write("COMMIT")
    return result


class Store:
    """The database, opened once per process and shared."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        # One connection is shared by every task: a write must not land inside another task's
        # open transaction (its ROLLBACK would undo it), so writes and transactions take turns.
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """Hold the write lock; yields True when this call took it (False: already held)."""
        task = asyncio.current_task()
        if self._owner is not None and self._owner is task:
            yield False
            return
        async with self._lock:
            self._owner = task
            try:
                yield True
            finally:
                self._owner = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """An IMMEDIATE transaction: checks and writes inside it see no one else's writes."""
        async with self._turn() as outermost:
            if not outermost:
                yield
                return
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._turn():
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount

    async def _hop(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on aiosqlite's database thread: one hand-off, however many statements.

        aiosqlite's own methods queue work with ``_execute``, and it offers no public twin that
        takes a function (pyproject pins the versions this was read against).
        """
        tx = Tx(self._conn._conn)
        return cast(T, await self._conn._execute(fn, tx))  # type: ignore[no-untyped-call]

    async def _change(self, fn: Callable[[Tx], T]) -> T:
        """A write outside anyone else's open transaction (inside the caller's own, if any)."""
        async with self._turn():
            return await self._hop(fn)

    async def atomic(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` inside one IMMEDIATE transaction, in one hop to the database thread.

        ``fn`` is synchronous, so no other task's statement can land between its checks and its
        writes; an exception it raises rolls everything back and reaches the caller. Inside an
        open :meth:`transaction` it simply joins it.
        """
        async with self._turn() as outermost:
            return await self._hop(functools.partial(_in_transaction, fn) if outermost else fn)

    # Reads take ONE trip to aiosqlite's thread (execute_fetchall), not three (execute, fetch,
    # close): each trip is a thread hand-off, and admission makes several reads per job.
    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def _first(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        if sqlite3.sqlite_version_info < (3, 35):  # UPDATE ... RETURNING
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or newer is needed")
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)  # explicit transactions
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA synchronous=NORMAL")  # durable in WAL across a process crash
        await conn.execute("PRAGMA busy_timeout=5000")  # the CLI and the bot may share one file
        store = cls(conn)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._conn.close()

    # --- schema ------------------------------------------------------------------------------

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = await self.schema_version()
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                # Re-read inside the lock: another process may have migrated meanwhile.
                if version <= await self.schema_version():
                    await self._conn.execute("ROLLBACK")
                    continue
                for statement in statements:
                    await self._conn.execute(statement)
                await self._conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            log.info("database migrated to schema version %d", version)

    async def schema_version(self) -> int:
        row = await self._first("SELECT MAX(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    # --- jobs --------------------------------------------------------------------------------

    async def insert_job(self, new: NewJob, *, now: float | None = None) -> Job:
        """Record an accepted job, its idempotency key generated here, before any API call."""
        at = time.time() if now is None else now
        return await self._change(lambda tx: tx.insert_job(new, at))

    async def get_job(self, job_id: str) -> Job | None:
        return await self._hop(lambda tx: tx.get_job(job_id))

    async def get_job_by_api_id(self, api_job_id: str) -> Job | None:
        return await self._hop(lambda tx: tx.get_job_by_api_id(api_job_id))

    async def jobs_in_states(self, states: Iterable[JobState], *, source: str | None = None) -> list[Job]:
        """Jobs in these states, oldest first; ``source`` keeps one face's jobs only."""
        wanted: list[Any] = [s.value for s in states]
        sql = f"SELECT {_READ_COLUMNS} FROM jobs WHERE state IN ({', '.join('?' * len(wanted))})"
        if source is not None:
            sql += " AND source = ?"
            wanted.append(source)
        return await self._many(sql + " ORDER BY created_at", wanted)

    async def transition(
        self, job_id: str, target: JobState, *, expected: JobState | None = None, **fields: Any
    ) -> Job:
        """Move a job to ``target`` and set ``fields``, or raise :class:`IllegalTransition`.

        ``expected`` pins the state the caller saw; without it the current state is read. Either
        way the write only happens if the row is still in that state, so of two racing callers
        exactly one wins and the other gets IllegalTransition. An end settles the job's pool in
        the same transaction.
        """
        return await self.atomic(lambda tx: tx.transition(job_id, target, expected, fields))

    async def mark_undeliverable(self, job: Job, note: str) -> Job:
        """Close a job no route could reach. A completed job's charge goes back to its pool:
        the community paid for a result nobody received (the unique index keeps it once)."""
        return await self.atomic(lambda tx: tx.mark_undeliverable(job, note))

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self._first(sql, params)
        return row[0] if row else None

    # --- servers: pools, plans, rules, audit --------------------------------------------------

    async def ensure_guild(self, guild_id: int, welcome_credits: int = 0) -> Guild:
        """The server's row, created on first use with its welcome grant in the ledger."""
        guild = await self.get_guild(guild_id)
        if guild is not None:
            return guild
        return await self.atomic(lambda tx: tx.ensure_guild(guild_id, welcome_credits))

    async def guilds_waiting(self) -> list[Guild]:
        """Servers with queued jobs (to tell them the queue is paused)."""
        ids = [
            int(r[0])
            for r in await self._rows(
                "SELECT DISTINCT guild_id FROM jobs WHERE state = ? AND guild_id IS NOT NULL",
                (JobState.QUEUED.value,),
            )
        ]
        return [g for g in [await self.get_guild(i) for i in ids] if g is not None]

    async def get_guild(self, guild_id: int) -> Guild | None:
        return await self._hop(lambda tx: tx.get_guild(guild_id))

    _GUILD_FIELDS: Final = frozenset(
        {"default_plan", "daily_allowance", "low_balance_threshold", "alert_channel_id", "alert_armed"}
    )

    async def update_guild(self, guild_id: int, **fields: Any) -> None:
        unknown = set(fields) - self._GUILD_FIELDS
        if unknown:
            raise ValueError(f"not a server setting: {', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        await self._write(f"UPDATE guilds SET {assignments} WHERE guild_id = ?", (*fields.values(), guild_id))

    async def topup(self, guild_id: int, amount: int, actor_id: int) -> Guild:
        """Add credits; re-arms the low-balance alert once the balance is back above it."""

        def topup(tx: Tx) -> Guild:
            tx.ledger(guild_id, "topup", amount, user_id=actor_id, note=f"top-up by {actor_id}")
            tx.write(
                "UPDATE guilds SET alert_armed = 1 WHERE guild_id = ?"
                " AND (low_balance_threshold IS NULL OR balance >= low_balance_threshold)",
                (guild_id,),
            )
            guild = tx.get_guild(guild_id)
            assert guild is not None
            return guild

        return await self.atomic(topup)

    async def member_spent(self, guild_id: int, user_id: int, since: float) -> int:
        return await self._hop(lambda tx: tx.member_spent(guild_id, user_id, since))

    async def ledger_sum(self, guild_id: int) -> int:
        return int(
            await self._scalar("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE guild_id = ?", (guild_id,))
        )

    async def ledger_rows(self, guild_id: int, limit: int = 10) -> list[LedgerRow]:
        rows = await self._rows(
            "SELECT kind, amount, job_id, user_id, note, created_at FROM ledger WHERE guild_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (guild_id, limit),
        )
        return [LedgerRow(*row) for row in rows]

    async def member_rule(self, guild_id: int, user_id: int) -> MemberRule | None:
        return await self._hop(lambda tx: tx.member_rule(guild_id, user_id))

    async def set_member_rule(self, guild_id: int, user_id: int, **fields: Any) -> None:
        """Upsert one member's override, block or quota reset (portable: update, then insert)."""
        allowed = {"plan", "blocked", "reason", "reset_at"}
        if set(fields) - allowed:
            raise ValueError("not a member rule field")
        async with self.transaction():
            assignments = ", ".join(f"{name} = ?" for name in fields)
            changed = await self._write(
                f"UPDATE member_rules SET {assignments} WHERE guild_id = ? AND user_id = ?",
                (*fields.values(), guild_id, user_id),
            )
            if not changed:
                names = ", ".join(fields)
                await self._write(
                    f"INSERT INTO member_rules (guild_id, user_id, {names})"
                    f" VALUES (?, ?{', ?' * len(fields)})",
                    (guild_id, user_id, *fields.values()),
                )

    async def role_plans(self, guild_id: int) -> dict[int, str]:
        return await self._hop(lambda tx: tx.role_plans(guild_id))

    async def set_role_plan(self, guild_id: int, role_id: int, plan: str | None) -> None:
        async with self.transaction():
            await self._write(
                "DELETE FROM role_plans WHERE guild_id = ? AND role_id = ?", (guild_id, role_id)
            )
            if plan is not None:
                await self._write(
                    "INSERT INTO role_plans (guild_id, role_id, plan) VALUES (?, ?, ?)",
                    (guild_id, role_id, plan),
                )

    async def set_channel_rule(self, guild_id: int, channel_id: int, allowed: bool) -> None:
        async with self.transaction():
            await self._write(
                "DELETE FROM channel_rules WHERE guild_id = ? AND channel_id = ?", (guild_id, channel_id)
            )
            await self._write(
                "INSERT INTO channel_rules (guild_id, channel_id, allowed) VALUES (?, ?, ?)",
                (guild_id, channel_id, int(allowed)),
            )

    async def audit(
        self, guild_id: int, actor_id: int, action: str, target: str | None, detail: str | None
    ) -> None:
        await self._write(
            "INSERT INTO audit (guild_id, actor_id, action, target, detail, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (guild_id, actor_id, action, target, detail, time.time()),
        )

    async def audit_rows(self, guild_id: int, limit: int = 15) -> list[AuditRow]:
        return [
            AuditRow(*row)
            for row in await self._rows(
                "SELECT actor_id, action, target, detail, created_at FROM audit WHERE guild_id = ?"
                " ORDER BY id DESC LIMIT ?",
                (guild_id, limit),
            )
        ]

    async def mark_delivery_started(self, job_id: str, at: float) -> None:
        """Note (once: the first attempt counts) that the result is about to be sent."""
        await self._write(
            "UPDATE jobs SET delivery_started_at = COALESCE(delivery_started_at, ?) WHERE id = ?",
            (at, job_id),
        )

    async def set_status_card(self, job_id: str, channel_id: int, message_id: int) -> None:
        await self._write(
            "UPDATE jobs SET status_channel_id = ?, status_message_id = ? WHERE id = ?",
            (channel_id, message_id, job_id),
        )

    async def recent_jobs(self, user_id: int, limit: int = 10) -> list[Job]:
        return await self._many(
            f"SELECT {_READ_COLUMNS} FROM jobs WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
            (user_id, limit),
        )

    async def queue_position(self, job: Job) -> int:
        """1 + the queued jobs accepted before this one (account-wide)."""
        row = await self._first(
            "SELECT COUNT(*) FROM jobs WHERE state = ? AND created_at < ?",
            (JobState.QUEUED.value, job.created_at),
        )
        return 1 + (int(row[0]) if row else 0)

    async def cancelled_at_api(self, since: float) -> list[Job]:
        """Jobs cancelled here that the API may still be running (submitted after ``since``)."""
        return await self._many(
            f"SELECT {_READ_COLUMNS} FROM jobs WHERE state = 'cancelled' AND api_job_id IS NOT NULL"
            " AND api_ended_at IS NULL AND submitted_at > ?",
            (since,),
        )

    async def count_cancelled_at_api(self, since: float) -> int:
        return int(
            await self._scalar(
                "SELECT COUNT(*) FROM jobs WHERE state = 'cancelled' AND api_job_id IS NOT NULL"
                " AND api_ended_at IS NULL AND submitted_at > ?",
                (since,),
            )
        )

    async def mark_api_ended(self, job_id: str) -> None:
        """The API finished (or we gave up on) a job we had cancelled: its slot is free."""
        await self._change(lambda tx: tx.mark_api_ended(job_id))

    async def count_in_states(self, states: Iterable[JobState], *, source: str | None = None) -> int:
        wanted: list[Any] = [s.value for s in states]
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(wanted))})"
        if source is not None:
            sql += " AND source = ?"
            wanted.append(source)
        row = await self._first(sql, wanted)
        return int(row[0]) if row else 0

    # --- quotas (see Tx: admission runs them in its one transaction) --------------------------

    async def usage(self, user_id: int, minute_since: float, day_since: float) -> Usage:
        return await self._hop(lambda tx: tx.usage(user_id, minute_since, day_since))

    # --- helpers -----------------------------------------------------------------------------

    async def _many(self, sql: str, params: Sequence[Any]) -> list[Job]:
        rows = await self._rows(sql, params)
        return [_job_from_row(row) for row in rows]


# Column name -> position in a row read with _READ_COLUMNS. sqlite3.Row looks a name up by a
# case-insensitive scan of all 32 columns; by position, building a Job costs a third as much
# (it is built twice per webhook report).
_AT: Final = {name.strip(): i for i, name in enumerate(_READ_COLUMNS.split(","))}


def _job_from_row(row: Sequence[Any]) -> Job:
    """A Job from a row of _READ_COLUMNS."""
    at = _AT
    return Job(
        id=row[at["id"]],
        idempotency_key=row[at["idempotency_key"]],
        state=JobState(row[at["state"]]),
        source=row[at["source"]],
        image_ref=row[at["image_ref"]],
        # Rows were validated on the way in; re-validating on read would make an old row with a
        # since-retired option unreadable, so build the options without the checks.
        options=_options_unchecked(row),
        estimated_credits=row[at["estimated_credits"]],
        created_at=row[at["created_at"]],
        updated_at=row[at["updated_at"]],
        user_id=row[at["user_id"]],
        guild_id=row[at["guild_id"]],
        channel_id=row[at["channel_id"]],
        interaction_id=row[at["interaction_id"]],
        interaction_token=row[at["interaction_token"]],
        token_expires_at=row[at["token_expires_at"]],
        api_job_id=row[at["api_job_id"]],
        actual_credits=row[at["actual_credits"]],
        result_url=row[at["result_url"]],
        error=row[at["error"]],
        submitted_at=row[at["submitted_at"]],
        completed_at=row[at["completed_at"]],
        delivered_at=row[at["delivered_at"]],
        status_channel_id=row[at["status_channel_id"]],
        status_message_id=row[at["status_message_id"]],
        upload_limit=row[at["upload_limit"]],
        outcome=row[at["outcome"]],
        delivery_note=row[at["delivery_note"]],
        delivery_started_at=row[at["delivery_started_at"]],
    )


def _options_unchecked(row: Sequence[Any]) -> JobOptions:
    options = object.__new__(JobOptions)
    for name in ("prompt", "duration", "aspect_ratio", "motion", "version"):
        object.__setattr__(options, name, row[_AT[name]])
    return options
