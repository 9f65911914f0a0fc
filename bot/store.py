"""The job store: every SQL statement of the project lives in this module.

SQLite through aiosqlite, in WAL mode with foreign keys on. The SQL is kept portable
(no SQLite-only syntax in the queries: ``?`` placeholders are the only dialect detail) so a
PostgreSQL backend can follow with the same interface.

State changes are compare-and-set (``UPDATE ... WHERE id = ? AND state = ?``), checked against
the state machine in :mod:`bot.jobs` first: an illegal move raises instead of writing, and two
paths racing to apply the same move (a webhook and the poller) cannot both win.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite

from bot.jobs import IllegalTransition, Job, JobOptions, JobState, can_transition

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
]

_JOB_COLUMNS: Final = (
    "id, idempotency_key, api_job_id, state, source, user_id, guild_id, channel_id, interaction_id, "
    "interaction_token, token_expires_at, image_ref, prompt, duration, aspect_ratio, motion, version, "
    "estimated_credits, actual_credits, result_url, error, created_at, updated_at, submitted_at, "
    "completed_at, delivered_at"
)
# Columns a state transition may set besides the state itself (the allow-list keeps the
# dynamic SET clause free of anything a caller could inject).
_TRANSITION_FIELDS: Final = frozenset(
    {"api_job_id", "actual_credits", "result_url", "error", "submitted_at", "completed_at", "delivered_at"}
)
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


class Store:
    """The database, opened once per process and shared."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

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

    async def insert_job(self, new: NewJob) -> Job:
        """Record an accepted job, its idempotency key generated here, before any API call."""
        now = time.time()
        opts = new.options
        for _ in range(5):  # an id collision is astronomically rare; retry rather than fail
            job_id = new_job_id()
            try:
                await self._conn.execute(
                    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 26)})",
                    (
                        job_id, str(uuid.uuid4()), None, JobState.QUEUED.value, new.source,
                        new.user_id, new.guild_id, new.channel_id, new.interaction_id,
                        new.interaction_token, new.token_expires_at, new.image_ref, opts.prompt,
                        opts.duration, opts.aspect_ratio, opts.motion, opts.version,
                        opts.estimated_credits, None, None, None, now, now, None, None, None,
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

    async def jobs_in_states(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [s.value for s in states]
        sql = (
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({', '.join('?' * len(wanted))}) "
            "ORDER BY created_at"
        )
        return await self._many(sql, wanted)

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
        current = expected
        if current is None:
            job = await self.get_job(job_id)
            if job is None:
                raise KeyError(job_id)
            current = job.state
        if not can_transition(current, target):
            raise IllegalTransition(job_id, current, target)
        assignments = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE jobs SET state = ?, updated_at = ?{', ' if fields else ''}{assignments} "
        sql += "WHERE id = ? AND state = ?"
        params = [target.value, time.time(), *fields.values(), job_id, current.value]
        cursor = await self._conn.execute(sql, params)
        if cursor.rowcount != 1:
            now = await self.get_job(job_id)
            raise IllegalTransition(job_id, now.state if now else None, target)
        job = await self.get_job(job_id)
        assert job is not None
        return job

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
    )


def _options_unchecked(row: aiosqlite.Row) -> JobOptions:
    options = object.__new__(JobOptions)
    for name in ("prompt", "duration", "aspect_ratio", "motion", "version"):
        object.__setattr__(options, name, row[name])
    return options
