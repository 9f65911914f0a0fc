"""The job store: every SQL statement of the project lives in this package.

The SQL lives in one module per table family, as plain functions of a transaction handle
(:class:`~bot.store.engine.Tx`):

- :mod:`bot.store.jobs`: job rows, their state moves, and the counts quotas are made of;
- :mod:`bot.store.pools`: servers' rows, the credit ledger, reservations and settlements;
- :mod:`bot.store.rules`: members' overrides and blocks, plans by role, channel rules;
- :mod:`bot.store.audit`: the moderators' audit trail;
- :mod:`bot.store.prompt_rules`: a server's prompt filter;
- :mod:`bot.store.option_defaults`: default /animate options per channel and per member;
- :mod:`bot.store.pictures`: checked pictures kept for a while (jobs outlive attachment URLs);
- :mod:`bot.store.reports`: members' reports of results;
- :mod:`bot.store.showcase`: stars on results, and which were reposted;
- :mod:`bot.store.leader`: the leader's lease and term (which process runs the leader's loops);
- :mod:`bot.store.pause`: the API account's submitting pause, which any process may lift;
- :mod:`bot.store.turns`: turns the processes take one at a time (Discord's identify buckets);
- :mod:`bot.store.migrate`: the schema, from the numbered files in ``migrations/``.

The engine sits behind :mod:`bot.store.engine`: SQLite (:mod:`bot.store.sqlite`, the default:
a file, nothing to install) or PostgreSQL (:mod:`bot.store.postgres`, for several processes
sharing one store). :meth:`Store.open` picks it from the location, in that one place; the SQL
is the same for both.

:class:`Store` is what the rest of the bot holds: each of its async methods is ONE hop to the
database running one of those functions; :meth:`Store.atomic` runs a caller's function of a
``Tx`` (admission, group commit) in one transaction, still one hop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

from bot.jobs import Job, JobState
from bot.store import (
    audit,
    jobs,
    leader,
    option_defaults,
    pause,
    pictures,
    pools,
    prompt_rules,
    reports,
    rules,
    showcase,
    turns,
)
from bot.store.engine import Engine, Leadership, NotLeader, Query, StoreUnavailable, Tx, member_key, pool_key
from bot.store.migrate import MIGRATIONS, migrate
from bot.store.records import (
    AuditRow,
    Guild,
    LedgerRow,
    MemberRule,
    NewJob,
    OptionDefaults,
    Picture,
    PromptRule,
    RequestSetting,
    Usage,
)
from bot.store.sqlite import SqliteEngine

__all__ = [
    "MIGRATIONS", "AuditRow", "Engine", "Guild", "Leadership", "LedgerRow", "MemberRule", "NewJob",
    "NotLeader", "OptionDefaults", "Picture", "PromptRule", "Query", "RequestSetting", "Store",
    "StoreUnavailable", "Tx",
    "Usage", "is_url", "member_key", "pool_key",
]  # fmt: skip

_SCHEMES: Final = ("postgresql://", "postgres://")
LEASE: Final = 3.0  # seconds a leader's renewal stays good; it renews every second


def is_url(location: Path | str) -> bool:
    """Whether ``location`` names a PostgreSQL database (else it is a SQLite file's path)."""
    return isinstance(location, str) and location.startswith(_SCHEMES)


T = TypeVar("T")


class Store:
    """The database, opened once per process and shared."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, location: Path | str) -> Store:
        """Open the database at ``location`` and bring its schema up to date: a
        ``postgresql://`` (or ``postgres://``) URL opens PostgreSQL, anything else is the path
        of a SQLite file (created if need be). The one place an engine is chosen."""
        engine: Engine
        if is_url(location):
            from bot.store.postgres import PostgresEngine  # psycopg is loaded only when used

            engine = await PostgresEngine.open(str(location))
        else:
            engine = await SqliteEngine.open(location)
        try:
            await migrate(engine)
        except BaseException:
            await engine.close()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self.engine.close()

    async def atomic(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` inside one transaction holding the write lock, in one hop to the database.

        ``fn`` is synchronous, so no other task's statement can land between its checks and its
        writes; an exception it raises rolls everything back and reaches the caller. Every write
        of the store goes through here.
        """
        return await self.engine.atomic(fn)

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        return await self.engine.run(fn)

    # --- jobs --------------------------------------------------------------------------------

    async def insert_job(self, new: NewJob, *, now: float | None = None) -> Job:
        """Record an accepted job, its idempotency key generated here, before any API call."""
        at = time.time() if now is None else now
        return await self.atomic(lambda tx: jobs.insert(tx, new, at))

    async def get_job(self, job_id: str) -> Job | None:
        return await self._read(lambda tx: jobs.get(tx, job_id))

    async def jobs_in_states(self, states: Iterable[JobState], *, source: str | None = None) -> list[Job]:
        """Jobs in these states, oldest first; ``source`` keeps one face's jobs only."""
        return await self._read(lambda tx: jobs.in_states(tx, states, source))

    async def count_in_states(self, states: Iterable[JobState], *, source: str | None = None) -> int:
        return await self._read(lambda tx: jobs.count_in_states(tx, states, source))

    async def count_by_state(self, states: Iterable[JobState]) -> dict[str, int]:
        return await self._read(lambda tx: jobs.count_by_state(tx, states))

    async def transition(
        self, job_id: str, target: JobState, *, expected: JobState | None = None, fence: int | None = None,
        **fields: Any,
    ) -> Job:  # fmt: skip
        """Move a job to ``target`` and set ``fields``, or raise :class:`IllegalTransition`
        (see :func:`bot.store.jobs.transition`); an end settles the job's pool with it.
        ``fence``: the leader's term for a leader-only move (:class:`NotLeader` once it is over)."""
        return await self.atomic(lambda tx: jobs.transition(tx, job_id, target, expected, fields, fence))

    # --- leadership ------------------------------------------------------------------------------

    def leadership(self, holder: str, lease: float = LEASE) -> Leadership:
        """This process's leadership among those sharing the database (see :mod:`bot.store.leader`)."""
        return self.engine.leadership(holder, lease)

    async def leader_term(self) -> int | None:
        """The current leader's term (None before any process led)."""
        return await self._read(leader.current_term)

    # --- the submitting pause --------------------------------------------------------------------

    async def record_pause(self, reason: str) -> None:
        """Submitting is paused until the operator acts (see :mod:`bot.store.pause`)."""
        await self.atomic(lambda tx: pause.record(tx, reason))

    async def clear_pause(self) -> None:
        await self.atomic(pause.clear)

    async def pause_reason(self) -> str | None:
        return await self._read(pause.reason)

    async def take_turn(self, name: str, window: float) -> float:
        """Take ``name``'s turn among every process sharing the store: 0.0 when taken, else the
        seconds to wait before asking again (see :mod:`bot.store.turns`)."""
        return await self.atomic(lambda tx: turns.take(tx, name, window))

    # --- delivery --------------------------------------------------------------------------------

    async def mark_undeliverable(self, job: Job, note: str) -> Job:
        """Close a job no route could reach, giving a completed job's charge back to its pool."""
        return await self.atomic(lambda tx: jobs.mark_undeliverable(tx, job, note))

    async def claim_delivery(self, job_id: str, owner: str, lease: float) -> Job | None:
        """Claim (or renew) one finished job for ``owner``'s delivery; None when it is not
        ours to deliver (delivered already, or another live owner holds it)."""
        return await self.atomic(lambda tx: jobs.claim_delivery(tx, job_id, owner, lease))

    async def claim_deliveries(
        self, owner: str, lease: float, *, source: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Claim finished jobs nobody holds (new, or their owner's lease ran out), oldest first."""
        return await self.atomic(lambda tx: jobs.claim_deliveries(tx, owner, lease, source, limit))

    async def release_deliveries(self, owner: str) -> int:
        """Give up ``owner``'s claims on jobs not yet delivered (a clean stop)."""
        return await self.atomic(lambda tx: jobs.release_deliveries(tx, owner))

    async def mark_delivery_started(self, job_id: str, at: float) -> None:
        await self.atomic(lambda tx: jobs.mark_delivery_started(tx, job_id, at))

    async def set_status_card(self, job_id: str, channel_id: int, message_id: int) -> None:
        await self.atomic(lambda tx: jobs.set_status_card(tx, job_id, channel_id, message_id))

    async def mark_api_ended(self, job: Job, charged: int) -> bool:
        """A job cancelled or expired here has ended at the API, which billed ``charged`` for it."""
        return await self.atomic(lambda tx: jobs.mark_api_ended(tx, job, charged))

    async def recent_jobs(self, user_id: int, limit: int = 10) -> list[Job]:
        return await self._read(lambda tx: jobs.recent(tx, user_id, limit))

    async def queue_position(self, job: Job) -> int:
        return await self._read(lambda tx: jobs.queue_position(tx, job))

    async def cancelled_at_api(self, since: float) -> list[Job]:
        return await self._read(lambda tx: jobs.cancelled_at_api(tx, since))

    async def count_cancelled_at_api(self, since: float) -> int:
        return await self._read(lambda tx: jobs.count_cancelled_at_api(tx, since))

    async def expired_at_api(self, since: float) -> list[Job]:
        return await self._read(lambda tx: jobs.expired_at_api(tx, since))

    async def usage(self, user_id: int, guild_id: int | None, minute_since: float, day_since: float) -> Usage:
        """A member's jobs in the windows, counted where they were asked for (see jobs.usage_query)."""
        return await self._read(lambda tx: jobs.usage(tx, user_id, guild_id, minute_since, day_since))

    # --- servers: pools, rules, audit ------------------------------------------------------------

    async def get_guild(self, guild_id: int) -> Guild | None:
        return await self._read(lambda tx: pools.get(tx, guild_id))

    async def ensure_guild(self, guild_id: int, welcome_credits: int = 0) -> Guild:
        """The server's row, created on first use with its welcome grant in the ledger."""
        guild = await self.get_guild(guild_id)  # almost always there: a read takes no write lock
        return (
            guild
            if guild is not None
            else await self.atomic(lambda tx: pools.ensure(tx, guild_id, welcome_credits))
        )

    async def guilds_waiting(self) -> list[Guild]:
        """Servers with queued jobs (to tell them the queue is paused)."""
        return await self._read(pools.waiting)

    async def member_spent(self, guild_id: int, user_id: int, since: float) -> int:
        return await self._read(lambda tx: pools.member_spent(tx, guild_id, user_id, since))

    async def ledger_rows(self, guild_id: int, limit: int = 10) -> list[LedgerRow]:
        return await self._read(lambda tx: pools.ledger_rows(tx, guild_id, limit))

    async def member_rule(self, guild_id: int, user_id: int) -> MemberRule | None:
        return await self._read(lambda tx: rules.member_rule(tx, guild_id, user_id))

    async def role_plans(self, guild_id: int) -> dict[int, str]:
        return await self._read(lambda tx: rules.role_plans(tx, guild_id))

    async def option_defaults(
        self, user_id: int, channel_id: int | None
    ) -> tuple[OptionDefaults, OptionDefaults]:
        """A member's own default options and their channel's."""
        return await self._read(lambda tx: option_defaults.for_request(tx, user_id, channel_id))

    async def request_setting(
        self,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        *,
        age_restricted: bool,
        defaults: bool,
    ) -> RequestSetting:
        """What a new job reads before its picture, in one hop to the database (one round trip
        on PostgreSQL): the member's and the channel's default options (when ``defaults``), and
        in a server its prompt rules and whether the channel's results come as spoilers. Three
        reads were three hops each /animate, each a hand-off to the database thread that a burst's
        acknowledgements queued behind."""
        queries: list[Query[Any]] = []
        if defaults:
            queries.append(option_defaults.for_request_query(user_id, channel_id))
        if guild_id is not None:
            queries.append(prompt_rules.for_guild_query(guild_id))
            queries.append(rules.spoiler_query(guild_id, channel_id, age_restricted))
        if not queries:  # a DM with every option given: nothing to read
            return RequestSetting()
        answers = iter(await self._read(lambda tx: tx.batch(queries)))
        mine, channel = next(answers) if defaults else (OptionDefaults(), OptionDefaults())
        if guild_id is None:
            return RequestSetting(mine, channel)
        return RequestSetting(mine, channel, tuple(next(answers)), next(answers))

    async def defaults_of(self, scope: str, scope_id: int) -> OptionDefaults:
        """One level's default options: ``option_defaults.CHANNEL`` or ``MEMBER``, and its id."""
        return await self._read(lambda tx: option_defaults.get(tx, scope, scope_id))

    async def set_member_defaults(self, user_id: int, changes: OptionDefaults) -> OptionDefaults:
        return await self.atomic(
            lambda tx: option_defaults.merge(tx, option_defaults.MEMBER, user_id, changes, user_id)
        )

    async def clear_member_defaults(self, user_id: int) -> bool:
        return await self.atomic(lambda tx: option_defaults.clear(tx, option_defaults.MEMBER, user_id))

    async def keep_picture(self, picture: Picture, *, max_bytes: int, max_age: float) -> None:
        """Keep a checked picture within the bounds (see :mod:`bot.store.pictures`)."""
        at = time.time()
        await self.atomic(lambda tx: pictures.keep(tx, picture, at, max_bytes=max_bytes, max_age=max_age))

    async def picture(self, sha256: str) -> Picture | None:
        at = time.time()
        return await self.atomic(lambda tx: pictures.get(tx, sha256, at))

    async def report(self, job_id: str, reporter_id: int) -> bool:
        """Record a member's report of a result; False when they had reported it already."""
        return await self.atomic(lambda tx: reports.add(tx, job_id, reporter_id))

    async def spend_since(self, guild_id: int, since: float) -> list[tuple[float, int]]:
        return await self._read(lambda tx: pools.spend_since(tx, guild_id, since))

    async def jobs_per_member(self, guild_id: int, since: float, limit: int = 10) -> list[tuple[int, int]]:
        return await self._read(lambda tx: pools.jobs_per_member(tx, guild_id, since, limit))

    async def star(self, message_id: int, user_id: int, on: bool) -> tuple[Job, int] | None:
        """A member's star (or its removal) on a result message: the job and its stars after it,
        or None when the message is no result, or the star is its requester's own."""

        def unit(tx: Tx) -> tuple[Job, int] | None:
            job = jobs.by_result_message(tx, message_id)
            if job is None or job.user_id == user_id:
                return None
            return job, showcase.star(tx, job.id, user_id, on)

        return await self.atomic(unit)

    async def mark_showcased(self, job_id: str) -> bool:
        return await self.atomic(lambda tx: showcase.mark(tx, job_id))

    async def prompt_rules(self, guild_id: int) -> list[PromptRule]:
        return await self._read(lambda tx: prompt_rules.for_guild(tx, guild_id))

    async def audit_rows(self, guild_id: int, limit: int = 15) -> list[AuditRow]:
        return await self._read(lambda tx: audit.rows(tx, guild_id, limit))

    async def moderate(
        self, guild_id: int, welcome_credits: int, actor_id: int, action: str, target: str | None,
        detail: str | Callable[[T], str], change: Callable[[Tx], T],
    ) -> T:  # fmt: skip
        """A moderator's change as ONE transaction: the server's row (created on first use, with
        its welcome credits), the change, and its audit row; all of them or none.

        ``detail`` is the audit row's detail, or a function of what ``change`` returned.
        """

        def unit(tx: Tx) -> T:
            tx.serialize(pool_key(guild_id))  # a change may read the pool and write on it (the alert)
            pools.ensure(tx, guild_id, welcome_credits)
            result = change(tx)
            said = detail(result) if callable(detail) else detail
            audit.record(tx, guild_id, actor_id, action, target, said)
            return result

        return await self.atomic(unit)
