"""Admission: every check and the job's recording in ONE transaction.

In order: the member is not blocked, /animate may run in this channel, the member's plan
(override, best role, server default, bot default) has room in its windows, and the server's
pool and the member's daily allowance cover the estimate. Then the job row and its pool
reservation are written together. Because the checks and the writes share one transaction
that holds the member's and the pool's keys (:meth:`bot.store.Tx.serialize`; SQLite's
IMMEDIATE transaction holds them all), two commands sent at the same moment, from one process
or several, cannot both pass a limit of one, and a refusal writes nothing.

Counting is derived from the job rows themselves, so it is exact and survives restarts.
Windows: "per minute" is the last 60 s, "concurrent" is jobs not yet ended, "per day" is a
rolling 24 h. Jobs that ended unserved (failed, cancelled, expired) are given back. They count
in the server where the member asks (outside any server: their DMs and user-installed uses),
since each server chooses the member's plan and pays for their jobs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.community.plans import PlanChoice, resolve
from bot.i18n import Message, Text, TextError, say, say_n
from bot.jobs import Job
from bot.store import (
    Guild,
    MemberRule,
    NewJob,
    Query,
    Store,
    Tx,
    Usage,
    jobs,
    member_key,
    pool_key,
    pools,
    rules,
)
from shared import contract


@dataclass(frozen=True, slots=True)
class QuotaWindows:
    """Window lengths in seconds; tests shrink them (QUOTA_TIME_SCALE)."""

    minute: float = contract.RATE_WINDOW_SECONDS
    day: float = contract.DAY_SECONDS

    @classmethod
    def scaled(cls, scale: float) -> QuotaWindows:
        return cls(contract.RATE_WINDOW_SECONDS * scale, contract.DAY_SECONDS * scale)


@dataclass(frozen=True, slots=True)
class Policy:
    """The bot-wide side of admission."""

    default_plan: str = "free"  # DMs, and servers that set none
    windows: QuotaWindows = field(default_factory=QuotaWindows)
    welcome_credits: int = 0  # a new server's pool starts with this grant
    plans: Mapping[str, contract.Plan] = field(default_factory=lambda: dict(contract.PLANS))


class Refused(TextError):
    """A reason not to accept the job; :attr:`text` is what the member reads (``str()``: in English)."""


class QuotaExceeded(Refused):
    """A limit of the person's plan is reached; says which and when it frees."""

    def __init__(self, limit: str, allowed: int, plan: str, frees_at: float | None) -> None:
        self.limit = limit  # "concurrent", "per_minute" or "per_day"
        self.allowed = allowed
        self.plan = plan
        self.frees_at = frees_at  # Unix time; None = when a running job ends
        super().__init__(self.describe())

    def describe(self) -> Text:
        plan = self.plan.capitalize()
        if self.limit == "concurrent":
            return say_n(
                "You already have %(count)s animation running here, "
                "the most the %(plan)s plan allows at once.",
                "You already have %(count)s animations running here, "
                "the most the %(plan)s plan allows at once.",
                self.allowed,
                plan=plan,
            )
        if self.limit == "per_minute":
            return say_n(
                "You have started %(count)s animation here in the last minute, the %(plan)s plan's limit.",
                "You have started %(count)s animations here in the last minute, the %(plan)s plan's limit.",
                self.allowed,
                plan=plan,
            )
        return say_n(
            "You have started %(count)s animation here in the last 24 hours, the %(plan)s plan's limit.",
            "You have started %(count)s animations here in the last 24 hours, the %(plan)s plan's limit.",
            self.allowed,
            plan=plan,
        )


class Blocked(Refused):
    def __init__(self, reason: str | None) -> None:
        text: Message = (
            say("A moderator has blocked you from /animate here: %(reason)s.", reason=reason)
            if reason
            else say("A moderator has blocked you from /animate here.")
        )
        super().__init__(text)


class ChannelClosed(Refused):
    def __init__(self) -> None:
        super().__init__(say("/animate is not allowed in this channel; ask a moderator where it is."))


class PoolShort(Refused):
    def __init__(self, needs: int, has: int) -> None:
        self.needs, self.has = needs, has
        super().__init__(
            say(
                "The server's credit pool is too low: needs %(needs)s, pool has %(has)s. "
                "Ask an admin to top it up.",
                needs=needs,
                has=has,
            )
        )


class AllowanceShort(Refused):
    def __init__(self, needs: int, left: int, allowance: int) -> None:
        self.needs, self.left = needs, left
        super().__init__(
            say(
                "Your daily credit allowance here is used up: needs %(needs)s, you have %(left)s of "
                "%(allowance)s left in the last 24 hours.",
                needs=needs,
                left=left,
                allowance=allowance,
            )
        )


@dataclass(frozen=True, slots=True)
class Admitted:
    job: Job
    plan: PlanChoice
    low_balance: Guild | None = None  # set when this job took the pool below its alert line


def low_balance_alert(guild: Guild) -> Text:
    """The note to a server's alert channel when a job took its pool below the alert line."""
    return say(
        "⚠️ The server's credit pool is down to **%(balance)s** credits, below the alert line of "
        "%(line)s. Top it up with `/pool topup`.",
        balance=guild.balance,
        line=guild.low_balance_threshold,
    )


_UNREAD: Any = object()  # "not read yet" (None means "read, and there is none")


async def resolve_plan(
    store: Store, policy: Policy, guild_id: int | None, user_id: int, roles: Sequence[int],
    *, guild: Guild | None = _UNREAD, rule: MemberRule | None = _UNREAD,
) -> PlanChoice:  # fmt: skip
    """The member's plan; ``guild`` and ``rule`` skip their reads when the caller has them."""
    if guild_id is None:
        return _choose(policy, None, None, {}, roles)
    if guild is _UNREAD:
        guild = await store.get_guild(guild_id)
    if rule is _UNREAD:
        rule = await store.member_rule(guild_id, user_id)
    return _choose(policy, guild, rule, await store.role_plans(guild_id), roles)


def _choose(
    policy: Policy, guild: Guild | None, rule: MemberRule | None, role_plans: Mapping[int, str],
    roles: Sequence[int],
) -> PlanChoice:  # fmt: skip
    return resolve(
        bot_default=policy.default_plan,
        server_default=guild.default_plan if guild else None,
        role_plans=role_plans,
        member_roles=roles,
        override=rule.plan if rule else None,
        plans=policy.plans,
    )


async def admit(
    store: Store, new: NewJob, policy: Policy, *, roles: Sequence[int] = (), now: float | None = None
) -> Admitted:
    """Record ``new`` if every check passes; raise a :class:`Refused` (writing nothing) otherwise.

    The checks and the writes are one synchronous function run inside one transaction on the
    database thread (:meth:`Store.atomic`): one hand-off. ``now`` (tests move time with it)
    replaces the clock the windows and the job's timestamps are taken from, which is otherwise
    the database's (:meth:`bot.store.Tx.now`): hosts with skewed clocks still agree on windows.
    """
    if new.user_id is None:  # the CLI: the operator's own account, no per-person quota
        at = time.time() if now is None else now
        return Admitted(await store.insert_job(new, now=at), _choose(policy, None, None, {}, ()))
    return await store.atomic(functools.partial(_admit, new, policy, tuple(roles), now, new.user_id))


def _admit(
    new: NewJob, policy: Policy, roles: Sequence[int], given_now: float | None, user_id: int, tx: Tx
) -> Admitted:
    # Three batches (PostgreSQL: one round trip each, besides BEGIN and COMMIT): the keys and
    # what the checks read; the windows, counted on the clock read in the first; the writes.
    guild_id = new.guild_id
    rule: MemberRule | None = None
    guild: Guild | None = None
    plans: dict[int, str] = {}
    # The keys come first in the first batch: another process admitting this member, or
    # spending this pool, waits for this transaction before these reads, so two of them cannot
    # both pass a limit of one (SQLite: no-op). The wake-up for the leader goes with them: it
    # is sent only if this commits, which only an admitted job (its row written) does.
    if guild_id is None:
        (clock,) = tx.batch([tx.now()], serialize=[member_key(user_id)], notify=jobs.NEW_JOB_CHANNELS)
    else:
        clock, standing, *held = tx.batch(
            [
                tx.now(),
                rules.standing_query(guild_id, user_id, new.channel_id),
                # Only the member's roles count (no roles, no read: the CLI, many members).
                *([rules.member_role_plans_query(guild_id, roles)] if roles else []),
            ],
            serialize=[member_key(user_id), pool_key(guild_id)],
            notify=jobs.NEW_JOB_CHANNELS,
        )
        rule, guild = standing.rule, standing.guild
        plans = held[0] if held else {}
        if rule is not None and rule.blocked:
            raise Blocked(rule.reason)
        if new.channel_id is not None and not standing.channel_open:
            raise ChannelClosed
    now: float = clock if given_now is None else given_now
    if guild_id is not None and guild is None:
        # A server's first job creates its pool (a refusal rolls that back with the rest); once
        # per server, so the plain statements do.
        guild = pools.ensure(tx, guild_id, policy.welcome_credits)
    choice = _choose(policy, guild, rule, plans, roles)
    plan, windows = choice.plan, policy.windows
    # A moderator's /quota reset starts the person's windows afresh (running jobs still count).
    reset_at = rule.reset_at if rule is not None and rule.reset_at is not None else 0.0
    minute_since = max(now - windows.minute, reset_at)
    day_since = max(now - windows.day, reset_at)
    reads: list[Query[Any]] = [jobs.usage_query(user_id, guild_id, minute_since, day_since)]
    allowance = guild.daily_allowance if guild is not None else None
    if guild is not None and allowance is not None:
        reads.append(pools.member_spent_query(guild.guild_id, user_id, now - windows.day))
    usage, *spent = tx.batch(reads)
    _check_windows(tx, user_id, guild_id, plan, windows, usage, minute_since, day_since)
    cost = new.options.estimated_credits
    if guild is not None:
        if guild.balance < cost:
            raise PoolShort(cost, guild.balance)
        if allowance is not None:
            left = max(0, allowance - spent[0])
            if cost > left:
                raise AllowanceShort(cost, left, allowance)
    for _ in range(jobs.INSERT_ATTEMPTS):
        job = jobs.accepted(new, now, plan=plan.name, plan_why=choice.why)
        writes: list[Query[Any]] = [jobs.insert_query(job)]
        if guild is not None:
            writes += pools.reserve_queries(job, cost, now)
        if tx.batch(writes)[0]:
            low = pools.alerted(tx, guild, cost) if guild is not None else None
            return Admitted(job, choice, low_balance=low)
        # The id was taken (the reservation, naming this job's row, changed nothing): again.
    raise RuntimeError("could not allocate a unique job id")


def _check_windows(
    tx: Tx, user_id: int, guild_id: int | None, plan: contract.Plan, windows: QuotaWindows, usage: Usage,
    minute_since: float, day_since: float,
) -> None:  # fmt: skip
    if usage.active >= plan.concurrent_jobs:
        raise QuotaExceeded("concurrent", plan.concurrent_jobs, plan.name, None)
    if usage.in_minute >= plan.requests_per_minute:
        oldest = jobs.nth_counted_since(
            tx, user_id, guild_id, minute_since, usage.in_minute - plan.requests_per_minute
        )
        frees = oldest + windows.minute if oldest is not None else None
        raise QuotaExceeded("per_minute", plan.requests_per_minute, plan.name, frees)
    if plan.jobs_per_day is not None and usage.in_day >= plan.jobs_per_day:
        oldest = jobs.nth_counted_since(tx, user_id, guild_id, day_since, usage.in_day - plan.jobs_per_day)
        frees = oldest + windows.day if oldest is not None else None
        raise QuotaExceeded("per_day", plan.jobs_per_day, plan.name, frees)
