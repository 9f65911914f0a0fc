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
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

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
]

_JOB_COLUMNS: Final = (
    "id, idempotency_key, api_job_id, state, source, user_id, guild_id, channel_id, interaction_id, "
    "interaction_token, token_expires_at, image_ref, prompt, duration, aspect_ratio, motion, version, "
    "estimated_credits, actual_credits, result_url, error, created_at, updated_at, submitted_at, "
    "completed_at, delivered_at, status_channel_id, status_message_id, upload_limit, outcome, delivery_note"
)
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
class Usage:
    """One person's jobs in the quota windows. Ended jobs that were not served do not count."""

    active: int  # not yet ended
    in_minute: int
    in_day: int


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

    @classmethod
    async def open(cls, path: Path | str) -> Store:
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
        async with self._conn.execute("SELECT MAX(version) FROM schema_migrations") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # --- jobs --------------------------------------------------------------------------------

    async def insert_job(self, new: NewJob, *, now: float | None = None) -> Job:
        """Record an accepted job, its idempotency key generated here, before any API call."""
        now = time.time() if now is None else now
        opts = new.options
        for _ in range(5):  # an id collision is astronomically rare; retry rather than fail
            job_id = new_job_id()
            try:
                await self._write(
                    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 31)})",
                    (
                        job_id, str(uuid.uuid4()), None, JobState.QUEUED.value, new.source,
                        new.user_id, new.guild_id, new.channel_id, new.interaction_id,
                        new.interaction_token, new.token_expires_at, new.image_ref, opts.prompt,
                        opts.duration, opts.aspect_ratio, opts.motion, opts.version,
                        opts.estimated_credits, None, None, None, now, now, None, None, None,
                        None, None, new.upload_limit, None, None,
                    ),
                )  # fmt: skip
            except aiosqlite.IntegrityError:
                continue
            job = await self.get_job(job_id)
            assert job is not None
            return job
        raise RuntimeError("could not allocate a unique job id")

    async def get_job(self, job_id: str) -> Job | None:
        return await self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))

    async def get_job_by_api_id(self, api_job_id: str) -> Job | None:
        return await self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE api_job_id = ?", (api_job_id,))

    async def jobs_in_states(self, states: Iterable[JobState], *, source: str | None = None) -> list[Job]:
        """Jobs in these states, oldest first; ``source`` keeps one face's jobs only."""
        wanted: list[Any] = [s.value for s in states]
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({', '.join('?' * len(wanted))})"
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
        exactly one wins and the other gets IllegalTransition.
        """
        unknown = set(fields) - _TRANSITION_FIELDS
        if unknown:
            raise ValueError(f"not a transition field: {', '.join(sorted(unknown))}")
        async with self._turn():
            return await self._transition(job_id, target, expected, fields)

    async def _transition(
        self, job_id: str, target: JobState, expected: JobState | None, fields: dict[str, Any]
    ) -> Job:
        current = expected
        if current is None:
            job = await self.get_job(job_id)
            if job is None:
                raise KeyError(job_id)
            current = job.state
        if not can_transition(current, target):
            raise IllegalTransition(job_id, current, target)
        if target in _OUTCOME_OF:
            fields["outcome"] = _OUTCOME_OF[target]
        assignments = "".join(f", {name} = ?" for name in fields)
        sql = f"UPDATE jobs SET state = ?, updated_at = ?{assignments} WHERE id = ? AND state = ?"
        params = [target.value, time.time(), *fields.values(), job_id, current.value]
        if await self._write(sql, params) != 1:
            now = await self.get_job(job_id)
            raise IllegalTransition(job_id, now.state if now else None, target)
        job = await self.get_job(job_id)
        assert job is not None
        return job

    async def set_status_card(self, job_id: str, channel_id: int, message_id: int) -> None:
        await self._write(
            "UPDATE jobs SET status_channel_id = ?, status_message_id = ? WHERE id = ?",
            (channel_id, message_id, job_id),
        )

    async def recent_jobs(self, user_id: int, limit: int = 10) -> list[Job]:
        return await self._many(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE user_id = ? ORDER BY created_at DESC LIMIT ?",
            (user_id, limit),
        )

    async def queue_position(self, job: Job) -> int:
        """1 + the queued jobs accepted before this one (account-wide)."""
        async with self._conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = ? AND created_at < ?",
            (JobState.QUEUED.value, job.created_at),
        ) as cur:
            row = await cur.fetchone()
        return 1 + (int(row[0]) if row else 0)

    async def count_in_states(self, states: Iterable[JobState], *, source: str | None = None) -> int:
        wanted: list[Any] = [s.value for s in states]
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(wanted))})"
        if source is not None:
            sql += " AND source = ?"
            wanted.append(source)
        async with self._conn.execute(sql, wanted) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # --- quotas ------------------------------------------------------------------------------
    # A job counts toward a person's windows unless it ended without being served (failed,
    # cancelled or expired): those are "given back". Run these inside transaction() together
    # with insert_job so two commands at once cannot both pass a limit.

    _COUNTED = "(outcome IS NULL OR outcome = 'completed')"

    async def usage(self, user_id: int, minute_since: float, day_since: float) -> Usage:
        in_flight = [s.value for s in IN_FLIGHT]
        marks = ", ".join("?" * len(in_flight))
        sql = (
            f"SELECT SUM(CASE WHEN state IN ({marks}) THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN created_at > ? THEN 1 ELSE 0 END), COUNT(*) "
            f"FROM jobs WHERE user_id = ? AND created_at > ? AND {self._COUNTED}"
        )
        async with self._conn.execute(sql, (*in_flight, minute_since, user_id, day_since)) as cur:
            row = await cur.fetchone()
        active, minute, day = (int(v or 0) for v in row) if row else (0, 0, 0)
        # Jobs in flight since before the day window still hold a slot.
        async with self._conn.execute(
            f"SELECT COUNT(*) FROM jobs WHERE user_id = ? AND created_at <= ? AND state IN ({marks})",
            (user_id, day_since, *in_flight),
        ) as cur:
            old = await cur.fetchone()
        return Usage(active=active + (int(old[0]) if old else 0), in_minute=minute, in_day=day)

    async def nth_counted_since(self, user_id: int, since: float, n: int) -> float | None:
        """created_at of the n-th (0-based) oldest counted job after ``since``: when a slot frees."""
        async with self._conn.execute(
            f"SELECT created_at FROM jobs WHERE user_id = ? AND created_at > ? AND {self._COUNTED} "
            "ORDER BY created_at LIMIT 1 OFFSET ?",
            (user_id, since, n),
        ) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row else None

    # --- helpers -----------------------------------------------------------------------------

    async def _one(self, sql: str, params: Sequence[Any]) -> Job | None:
        async with self._conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row is not None else None

    async def _many(self, sql: str, params: Sequence[Any]) -> list[Job]:
        async with self._conn.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [_job_from_row(row) for row in rows]


def _job_from_row(row: aiosqlite.Row) -> Job:
    return Job(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        state=JobState(row["state"]),
        source=row["source"],
        image_ref=row["image_ref"],
        # Rows were validated on the way in; re-validating on read would make an old row with a
        # since-retired option unreadable, so build the options without the checks.
        options=_options_unchecked(row),
        estimated_credits=row["estimated_credits"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        user_id=row["user_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        interaction_id=row["interaction_id"],
        interaction_token=row["interaction_token"],
        token_expires_at=row["token_expires_at"],
        api_job_id=row["api_job_id"],
        actual_credits=row["actual_credits"],
        result_url=row["result_url"],
        error=row["error"],
        submitted_at=row["submitted_at"],
        completed_at=row["completed_at"],
        delivered_at=row["delivered_at"],
        status_channel_id=row["status_channel_id"],
        status_message_id=row["status_message_id"],
        upload_limit=row["upload_limit"],
        outcome=row["outcome"],
        delivery_note=row["delivery_note"],
    )


def _options_unchecked(row: aiosqlite.Row) -> JobOptions:
    options = object.__new__(JobOptions)
    for name in ("prompt", "duration", "aspect_ratio", "motion", "version"):
        object.__setattr__(options, name, row[name])
    return options
