"""Job rows: recording, reading, the state moves, and the counts quotas are made of.

State changes are compare-and-set (``UPDATE ... WHERE id = ? AND state = ?``), checked against
the state machine in :mod:`bot.jobs` first: an illegal move raises instead of writing, and two
paths racing to apply the same move (a webhook and the poller) cannot both win. An end settles
the job's pool (:func:`bot.store.pools.settle`) in the same transaction.

A new job and an end (an API slot freed) also wake the leader's scheduler in whichever process
leads (:meth:`~bot.store.engine.Tx.notify` on :data:`bot.store.leader.JOBS_CHANNEL`, sent on
commit); the scheduler's periodic scan stays the fallback.
"""

from __future__ import annotations

import dataclasses
import operator
import secrets
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Final

from bot.jobs import (
    AWAITING_DELIVERY,
    IN_FLIGHT,
    IllegalTransition,
    Job,
    JobOptions,
    JobState,
    can_transition,
)
from bot.store import leader, pools
from bot.store.engine import NotLeader, Query, Row, Tx, changed, fetch
from bot.store.records import NewJob, Usage

# Every column a Job is read from and written with, in order, and the Job attribute it holds
# ("options.x": a field of Job.options). A new job column is a migration and a line here.
COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("id", "id"), ("idempotency_key", "idempotency_key"), ("api_job_id", "api_job_id"),
    ("state", "state"), ("source", "source"), ("user_id", "user_id"), ("guild_id", "guild_id"),
    ("channel_id", "channel_id"), ("interaction_id", "interaction_id"),
    ("interaction_token", "interaction_token"), ("token_expires_at", "token_expires_at"),
    ("image_ref", "image_ref"), ("prompt", "options.prompt"), ("duration", "options.duration"),
    ("aspect_ratio", "options.aspect_ratio"), ("motion", "options.motion"),
    ("version", "options.version"), ("estimated_credits", "estimated_credits"),
    ("actual_credits", "actual_credits"), ("result_url", "result_url"), ("error", "error"),
    ("created_at", "created_at"), ("updated_at", "updated_at"), ("submitted_at", "submitted_at"),
    ("completed_at", "completed_at"), ("delivered_at", "delivered_at"),
    ("status_channel_id", "status_channel_id"), ("status_message_id", "status_message_id"),
    ("upload_limit", "upload_limit"), ("outcome", "outcome"), ("delivery_note", "delivery_note"),
    ("delivery_started_at", "delivery_started_at"), ("image_origin", "image_origin"),
    ("image_sha256", "image_sha256"), ("plan", "plan"), ("plan_why", "plan_why"),
    ("result_channel_id", "result_channel_id"), ("result_message_id", "result_message_id"),
    ("spoiler", "spoiler"), ("user_install", "user_install"), ("asked_in_guild_id", "asked_in_guild_id"),
    ("locale", "locale"),
)  # fmt: skip

_SELECT: Final = f"SELECT {', '.join(name for name, _ in COLUMNS)} FROM jobs"
# ON CONFLICT DO NOTHING: an id collision changes no row (and is retried) instead of raising,
# which in PostgreSQL would abort the whole transaction.
_INSERT: Final = (
    f"INSERT INTO jobs ({', '.join(name for name, _ in COLUMNS)})"
    f" VALUES ({', '.join('?' * len(COLUMNS))}) ON CONFLICT DO NOTHING"
)
_STATE_AT: Final = [name for name, _ in COLUMNS].index("state")  # stored as its value
_values_of: Final = operator.attrgetter(*(path for _, path in COLUMNS))


def _reader() -> tuple[Callable[[Row], tuple[Any, ...]], int, int, tuple[tuple[str, int], ...]]:
    """How to build a Job from a row BY POSITION (a name lookup per column made it three times
    as slow, and a Job is built twice per webhook report): a getter of the row's values in
    the order of Job's fields, where state and options go in that order, and where in the row
    each option is."""
    at = {path: i for i, (_, path) in enumerate(COLUMNS)}
    fields = [field.name for field in dataclasses.fields(Job)]
    missing = set(fields) - set(at) - {"options"}
    if missing:
        raise RuntimeError(f"Job fields with no column in COLUMNS: {', '.join(sorted(missing))}")
    # The options slot takes any value for now: from_row puts the options there.
    getter = operator.itemgetter(*(at.get(name, 0) for name in fields))
    options = tuple(
        (path.removeprefix("options."), i) for path, i in at.items() if path.startswith("options.")
    )
    return getter, fields.index("state"), fields.index("options"), options


_in_field_order, _STATE_FIELD, _OPTIONS_FIELD, _OPTIONS_AT = _reader()

# Columns a state transition may set besides the state itself (the allow-list keeps the
# dynamic SET clause free of anything a caller could inject).
_TRANSITION_FIELDS: Final = frozenset(
    {
        "api_job_id", "actual_credits", "result_url", "error", "submitted_at", "completed_at", "delivered_at",
        "delivery_note", "result_channel_id", "result_message_id",
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


def from_row(row: Row) -> Job:
    """A Job from a row of :data:`COLUMNS`."""
    values = list(_in_field_order(row))
    values[_STATE_FIELD] = JobState(values[_STATE_FIELD])
    values[_OPTIONS_FIELD] = _options_unchecked(row)
    return Job(*values)


def _options_unchecked(row: Row) -> JobOptions:
    # Rows were validated on the way in; re-validating on read would make an old row with a
    # since-retired option unreadable, so build the options without the checks.
    options = object.__new__(JobOptions)
    for name, at in _OPTIONS_AT:
        object.__setattr__(options, name, row[at])
    return options


def _row_of(job: Job) -> list[Any]:
    values = list(_values_of(job))
    values[_STATE_AT] = job.state.value
    return values


# --- recording and reading -----------------------------------------------------------------


# Whom a new job's row wakes: a follower admitted it, the leader submits it (sent on commit).
NEW_JOB_CHANNELS: Final = (leader.JOBS_CHANNEL,)
INSERT_ATTEMPTS: Final = 5  # an id collision is astronomically rare; retry rather than fail


def insert(tx: Tx, new: NewJob, now: float) -> Job:
    """Record an accepted job, its idempotency key generated here, before any API call."""
    for _ in range(INSERT_ATTEMPTS):
        job = accepted(new, now)
        if fetch(tx, insert_query(job)):
            for channel in NEW_JOB_CHANNELS:
                tx.notify(channel)
            return job
    raise RuntimeError("could not allocate a unique job id")


def accepted(new: NewJob, now: float, *, plan: str | None = None, plan_why: str | None = None) -> Job:
    """The job row to record for ``new``, with a fresh id and idempotency key (built from what
    is written, not read back); ``plan`` and ``plan_why``: what admission decided."""
    opts = new.options
    return Job(
        id=new_job_id(), idempotency_key=str(uuid.uuid4()), state=JobState.QUEUED, source=new.source,
        image_ref=new.image_ref, options=opts, estimated_credits=opts.estimated_credits,
        created_at=now, updated_at=now, user_id=new.user_id, guild_id=new.guild_id,
        channel_id=new.channel_id, interaction_id=new.interaction_id,
        interaction_token=new.interaction_token, token_expires_at=new.token_expires_at,
        upload_limit=new.upload_limit, image_origin=new.image_origin, image_sha256=new.image_sha256,
        plan=plan, plan_why=plan_why, spoiler=bool(new.spoiler), user_install=bool(new.user_install),
        asked_in_guild_id=new.asked_in_guild_id, locale=new.locale,
    )  # fmt: skip


def insert_query(job: Job) -> Query[bool]:
    """The INSERT of ``job``'s row; reads True when it was written, False when its id (or key)
    was taken already: try again with a fresh :func:`accepted` (the caller notifies
    :data:`bot.store.leader.JOBS_CHANNEL` once one is written)."""
    return Query(_INSERT, _row_of(job), changed_one)


def changed_one(rows: list[Row]) -> bool:
    return changed(rows) == 1


def get(tx: Tx, job_id: str) -> Job | None:
    row = tx.first(f"{_SELECT} WHERE id = ?", (job_id,))
    return from_row(row) if row is not None else None


def by_api_ids(tx: Tx, api_job_ids: Collection[str]) -> dict[str, Job]:
    if not api_job_ids:
        return {}
    marks = ", ".join("?" * len(api_job_ids))
    rows = tx.rows(f"{_SELECT} WHERE api_job_id IN ({marks})", list(api_job_ids))
    return {job.api_job_id: job for job in map(from_row, rows) if job.api_job_id is not None}


def in_states(tx: Tx, states: Iterable[JobState], source: str | None) -> list[Job]:
    """Jobs in these states, oldest first; ``source`` keeps one face's jobs only."""
    where, params = _states_filter(states, source)
    return [from_row(row) for row in tx.rows(f"{_SELECT} WHERE {where} ORDER BY created_at", params)]


def count_in_states(tx: Tx, states: Iterable[JobState], source: str | None) -> int:
    where, params = _states_filter(states, source)
    return int(tx.scalar(f"SELECT COUNT(*) FROM jobs WHERE {where}", params) or 0)


def count_by_state(tx: Tx, states: Iterable[JobState]) -> dict[str, int]:
    """How many jobs are in each of these states (a state with none is 0)."""
    wanted = [s.value for s in states]
    rows = tx.rows(
        f"SELECT state, COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(wanted))}) GROUP BY state",
        wanted,
    )
    return {state: 0 for state in wanted} | {str(state): int(count) for state, count in rows}


def _states_filter(states: Iterable[JobState], source: str | None) -> tuple[str, list[Any]]:
    params: list[Any] = [s.value for s in states]
    where = f"state IN ({', '.join('?' * len(params))})"
    if source is not None:
        where += " AND source = ?"
        params.append(source)
    return where, params


def recent(tx: Tx, user_id: int, limit: int) -> list[Job]:
    rows = tx.rows(f"{_SELECT} WHERE user_id = ? ORDER BY created_at DESC LIMIT ?", (user_id, limit))
    return [from_row(row) for row in rows]


def queue_position(tx: Tx, job: Job) -> int:
    """1 + the queued jobs accepted before this one (account-wide)."""
    ahead = tx.scalar(
        "SELECT COUNT(*) FROM jobs WHERE state = ? AND created_at < ?",
        (JobState.QUEUED.value, job.created_at),
    )
    return 1 + int(ahead or 0)


# A job cancelled here while the API ran it keeps an API slot until the API ends it.
_CANCELLED_AT_API: Final = (
    "state = 'cancelled' AND api_job_id IS NOT NULL AND api_ended_at IS NULL AND submitted_at > ?"
)


def cancelled_at_api(tx: Tx, since: float) -> list[Job]:
    """Jobs cancelled here that the API may still be running (submitted after ``since``)."""
    return [from_row(row) for row in tx.rows(f"{_SELECT} WHERE {_CANCELLED_AT_API}", (since,))]


def count_cancelled_at_api(tx: Tx, since: float) -> int:
    return int(tx.scalar(f"SELECT COUNT(*) FROM jobs WHERE {_CANCELLED_AT_API}", (since,)) or 0)


def expired_at_api(tx: Tx, since: float) -> list[Job]:
    """Jobs we stopped waiting for while the API had them (submitted after ``since``) whose
    end there is not seen yet: it may still finish and bill them."""
    return [
        from_row(row)
        for row in tx.rows(
            f"{_SELECT} WHERE outcome = 'expired' AND api_job_id IS NOT NULL AND api_ended_at IS NULL"
            " AND submitted_at > ?",
            (since,),
        )
    ]


# --- changes outside the state machine -------------------------------------------------------


def mark_api_ended(tx: Tx, job: Job, charged: int) -> bool:
    """The API finished (or we gave up on) a job we had cancelled or stopped waiting for: its
    slot is free, and its pool pays ``charged``, what the API billed for it (once: False when
    already marked)."""
    changed = tx.write(
        "UPDATE jobs SET api_ended_at = ? WHERE id = ? AND api_ended_at IS NULL", (time.time(), job.id)
    )
    if changed:
        pools.settle(tx, [job], api_charges={job.id: charged})
    return changed > 0


def mark_delivery_started(tx: Tx, job_id: str, at: float) -> None:
    """Note (once: the first attempt counts) that the result is about to be sent."""
    tx.write(
        "UPDATE jobs SET delivery_started_at = COALESCE(delivery_started_at, ?) WHERE id = ?", (at, job_id)
    )


def set_status_card(tx: Tx, job_id: str, channel_id: int, message_id: int) -> None:
    tx.write(
        "UPDATE jobs SET status_channel_id = ?, status_message_id = ? WHERE id = ?",
        (channel_id, message_id, job_id),
    )


# --- delivery claims ----------------------------------------------------------------------
# Any process may deliver a finished job, but only the one holding its claim does. A claim is
# an owner and a lease (the database's clock): a live owner renews it; a dead one's runs out.

_AWAITING: Final = tuple(sorted(state.value for state in AWAITING_DELIVERY))
_AWAITING_IN: Final = f"state IN ({', '.join('?' * len(_AWAITING))})"
_RETURNING: Final = f" RETURNING {', '.join(name for name, _ in COLUMNS)}"


def claim_delivery(tx: Tx, job_id: str, owner: str, lease: float) -> Job | None:
    """Claim (or renew the claim on) one job awaiting delivery for ``lease`` seconds; None when
    it is delivered already or another owner's claim still holds."""
    row = tx.first(
        f"UPDATE jobs SET delivery_owner = ?, delivery_lease_until = {tx.clock} + ?"
        f" WHERE id = ? AND {_AWAITING_IN} AND (delivery_owner = ? OR delivery_lease_until IS NULL"
        f" OR delivery_lease_until < {tx.clock}){_RETURNING}",
        (owner, lease, job_id, *_AWAITING, owner),
    )
    return from_row(row) if row is not None else None


def claim_deliveries(tx: Tx, owner: str, lease: float, source: str | None, limit: int) -> list[Job]:
    """Claim up to ``limit`` jobs awaiting delivery that nobody holds (never claimed, or their
    owner's lease ran out), oldest first; the owner's own claims are left alone (it knows of
    them). Two processes claiming at once get disjoint sets (PostgreSQL: SKIP LOCKED)."""
    where = (
        f"{_AWAITING_IN} AND (delivery_lease_until IS NULL OR delivery_lease_until < {tx.clock})"
        " AND (delivery_owner IS NULL OR delivery_owner <> ?)"
    )
    params: list[Any] = [*_AWAITING, owner]
    if source is not None:
        where += " AND source = ?"
        params.append(source)
    rows = tx.rows(
        f"UPDATE jobs SET delivery_owner = ?, delivery_lease_until = {tx.clock} + ? WHERE id IN"
        f" (SELECT id FROM jobs WHERE {where} ORDER BY created_at LIMIT ?{tx.skip_locked}){_RETURNING}",
        (owner, lease, *params, limit),
    )
    return sorted(map(from_row, rows), key=lambda job: job.created_at)


def release_deliveries(tx: Tx, owner: str) -> int:
    """Give up every claim of ``owner`` on a job still awaiting delivery (a clean stop): the
    next process need not wait for the leases to run out."""
    return tx.write(
        f"UPDATE jobs SET delivery_owner = NULL, delivery_lease_until = NULL"
        f" WHERE delivery_owner = ? AND {_AWAITING_IN}",
        (owner, *_AWAITING),
    )


# --- state moves ----------------------------------------------------------------------------


def transition(
    tx: Tx, job_id: str, target: JobState, expected: JobState | None, fields: dict[str, Any],
    fence: int | None = None,
) -> Job:  # fmt: skip
    """Move a job to ``target`` and set ``fields``, or raise :class:`IllegalTransition`.

    ``expected`` pins the state the caller saw; without it the current state is read. Either
    way the write only happens if the row is still in that state, so of two racing callers
    exactly one wins. An end also settles the pool: call it inside a transaction.

    ``fence``: a leader-only move (the scheduler's claim) made in leader term ``fence``; it
    raises :class:`NotLeader` and writes nothing once another term began. It takes the term's
    key (:data:`bot.store.leader.TERM_KEY`) first: call it as the transaction's first step.
    """
    if fence is not None:
        tx.serialize(leader.TERM_KEY)
        if not leader.term_is(tx, fence):
            raise NotLeader(f"leader term {fence} is over: job {job_id} left as it was")
    current = expected
    if current is None:
        job = get(tx, job_id)
        if job is None:
            raise KeyError(job_id)
        current = job.state
    sql, params, _ = _move(job_id, current, target, fields, time.time())
    # RETURNING (SQLite 3.35+, PostgreSQL): the updated row in the same statement.
    row = tx.first(f"{sql} RETURNING {', '.join(name for name, _ in COLUMNS)}", params)
    if row is None:
        now = get(tx, job_id)
        raise IllegalTransition(job_id, now.state if now else None, target)
    moved = from_row(row)
    if target in _OUTCOME_OF:
        pools.settle(tx, [moved])
        tx.notify(leader.JOBS_CHANNEL)  # its API slot is free
    return moved


def end_many(tx: Tx, moves: Sequence[tuple[Job, JobState, dict[str, Any]]]) -> list[Job | None]:
    """Move jobs read in THIS transaction to their ends and settle their pools together.

    The set-based twin of :func:`transition` for a group of webhook reports: the rows are
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
        changed = tx.write(sql, params)
        ended.append(dataclasses.replace(job, state=target, updated_at=now, **values) if changed else None)
    settled = [job for job in ended if job is not None]
    pools.settle(tx, settled)
    if settled:
        tx.notify(leader.JOBS_CHANNEL)  # their API slots are free (a webhook in a follower)
    return ended


def mark_undeliverable(tx: Tx, job: Job, note: str) -> Job:
    """Close a job no route could reach. A completed job's charge goes back to its pool:
    the community paid for a result nobody received (the ledger's unique index keeps it once)."""
    done = transition(
        tx, job.id, JobState.DELIVERED, job.state, {"delivered_at": time.time(), "delivery_note": note}
    )
    if job.outcome == "completed":
        pools.refund_undelivered(tx, job)
    return done


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


# --- quotas ---------------------------------------------------------------------------------
# A job counts toward a person's windows unless it ended without being served (failed,
# cancelled or expired): those are "given back". Run these in the same transaction as
# insert so two commands at once cannot both pass a limit.

_COUNTED: Final = "(outcome IS NULL OR outcome = 'completed')"


_IN_FLIGHT: Final = tuple(s.value for s in IN_FLIGHT)
_IN_FLIGHT_MARKS: Final = ", ".join("?" * len(_IN_FLIGHT))
# A member's windows count their jobs in one place: the server where they ask, or (no server)
# their DMs and user-installed uses. A plan is chosen per server, so another server's jobs,
# paid by that server's pool under that server's plan, must not use this one's limits.
# Two forms, not "guild_id IS ?": PostgreSQL cannot type a parameter compared only to NULL.
_IN_SERVER: Final = "guild_id = ?"
_IN_NO_SERVER: Final = "guild_id IS NULL"


def _where(guild_id: int | None) -> tuple[str, tuple[int, ...]]:
    return (_IN_NO_SERVER, ()) if guild_id is None else (_IN_SERVER, (guild_id,))


# One statement: the day window from the (user_id, created_at) index, plus jobs in flight
# since before the day window, which still hold a slot.
def _usage_sql(scope: str) -> str:
    return (
        f"SELECT SUM(CASE WHEN state IN ({_IN_FLIGHT_MARKS}) THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN created_at > ? THEN 1 ELSE 0 END), COUNT(*), "
        f"(SELECT COUNT(*) FROM jobs WHERE user_id = ? AND {scope} AND created_at <= ?"
        f" AND state IN ({_IN_FLIGHT_MARKS})) "
        f"FROM jobs WHERE user_id = ? AND {scope} AND created_at > ? AND {_COUNTED}"
    )


_USAGE: Final = {scope: _usage_sql(scope) for scope in (_IN_SERVER, _IN_NO_SERVER)}


def usage(tx: Tx, user_id: int, guild_id: int | None, minute_since: float, day_since: float) -> Usage:
    return fetch(tx, usage_query(user_id, guild_id, minute_since, day_since))


def usage_query(user_id: int, guild_id: int | None, minute_since: float, day_since: float) -> Query[Usage]:
    """A member's usage in the windows, in ``guild_id`` (None: outside any server)."""
    scope, where = _where(guild_id)
    params = (*_IN_FLIGHT, minute_since, user_id, *where, day_since, *_IN_FLIGHT, user_id, *where, day_since)
    return Query(_USAGE[scope], params, _usage)


def _usage(rows: list[Row]) -> Usage:
    active, minute, day, older = (int(v or 0) for v in rows[0]) if rows else (0, 0, 0, 0)
    return Usage(active=active + older, in_minute=minute, in_day=day)


def nth_counted_since(tx: Tx, user_id: int, guild_id: int | None, since: float, n: int) -> float | None:
    """created_at of the n-th (0-based) oldest counted job after ``since`` in the same place
    (:func:`usage_query`): when a slot frees."""
    scope, where = _where(guild_id)
    created = tx.scalar(
        f"SELECT created_at FROM jobs WHERE user_id = ? AND {scope} AND created_at > ? AND {_COUNTED} "
        "ORDER BY created_at LIMIT 1 OFFSET ?",
        (user_id, *where, since, n),
    )
    return float(created) if created is not None else None


def by_result_message(tx: Tx, message_id: int) -> Job | None:
    """The job whose result is the message ``message_id`` (a reaction's message), if any."""
    row = tx.first(f"{_SELECT} WHERE result_message_id = ?", (message_id,))
    return from_row(row) if row is not None else None
