"""What moderators change (plans, blocks, channels, the pool) and what members may read.

Each change is ONE transaction (:meth:`Store.moderate`): the server's row (created on first
use, with its welcome credits), the change itself and its audit row, so `/quota audit` tells
who did what and a change that fails leaves no trace. Permission checks happen in the cog
(Discord knows who is a moderator); :class:`Moderation` trusts its caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Protocol, TypeVar

from bot.community.admission import Policy, resolve_plan
from bot.community.defaults import check, describe
from bot.community.modlog import ModEvent, ModLog, announce
from bot.community.plans import PlanChoice
from bot.community.prompt_filter import PromptBlocked, PromptFilter, RuleError, check_rule
from bot.i18n import TextError, say
from bot.store import (
    AuditRow,
    Guild,
    LedgerRow,
    OptionDefaults,
    PromptRule,
    Store,
    Tx,
    option_defaults,
    pause,
    pools,
    prompt_rules,
    rules,
)  # fmt: skip

T = TypeVar("T")

MAX_TOPUP: Final = 10_000_000  # a typo guard, not a business rule


class ModerationError(TextError, ValueError):
    """A request that makes no sense (a negative top-up): the message says why."""


@dataclass(frozen=True, slots=True)
class MemberSummary:
    plan: PlanChoice
    active: int
    in_minute: int
    in_day: int
    blocked: bool
    balance: int | None
    allowance: int | None
    allowance_left: int | None

    @property
    def can_spend(self) -> int | None:
        """Credits this member can still take today: the pool, capped by their allowance."""
        if self.balance is None:
            return None
        return min(self.balance, self.allowance_left) if self.allowance_left is not None else self.balance


@dataclass(frozen=True, slots=True)
class RecentUsage:
    per_day: list[tuple[date, int]]  # every day of the span, oldest first (0: nothing spent)
    per_member: list[tuple[int, int]]  # (member, jobs), most first, the top ten


class Submitting(Protocol):
    """This process's switch that pauses submitting to the API (the scheduler's, a layer above
    this one); the pause that counts across processes is the store's (:mod:`bot.store.pause`)."""

    pause_reason: str | None

    def resume(self) -> None: ...


class Moderation:
    """The moderators' service: one method per command, each one unit of work."""

    def __init__(
        self, store: Store, policy: Policy, submitting: Submitting, prompt_filter: PromptFilter | None = None,
        modlog: ModLog | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.policy = policy
        self.submitting = submitting
        self.prompt_filter = prompt_filter or PromptFilter(store)
        self.modlog = modlog

    async def _change(
        self, guild_id: int, actor: int, action: str, target: str | None,
        detail: str | Callable[[T], str], change: Callable[[Tx], T],
    ) -> T:  # fmt: skip
        said: list[str] = []

        def noted(result: T) -> str:
            said.append(detail(result) if callable(detail) else detail)
            return said[0]

        result = await self.store.moderate(
            guild_id, self.policy.welcome_credits, actor, action, target, noted, change
        )
        await announce(
            self.store, self.modlog, guild_id, ModEvent(action, actor, target, said[0] if said else None)
        )
        return result

    async def set_showcase(self, guild_id: int, actor: int, channel_id: int | None, threshold: int) -> None:
        """Repost results with ``threshold`` stars to ``channel_id`` (None: no showcase)."""
        if threshold < 1:
            raise ModerationError(say("the threshold must be at least 1 star"))
        where = f"<#{channel_id}>" if channel_id else None
        said = f"at {threshold} ⭐" if channel_id else "off"
        settings = {"showcase_channel_id": channel_id, "showcase_threshold": threshold}
        await self._change(
            guild_id, actor, "showcase", where, said, lambda tx: pools.update(tx, guild_id, **settings)
        )

    async def set_modlog(self, guild_id: int, actor: int, channel_id: int | None) -> None:
        """Where this server's moderation events are posted (None: nowhere)."""
        where = f"<#{channel_id}>" if channel_id else None
        await self._change(
            guild_id, actor, "modlog", where, "on" if channel_id else "off",
            lambda tx: pools.update(tx, guild_id, modlog_channel_id=channel_id),
        )  # fmt: skip

    async def set_member_plan(self, guild_id: int, actor: int, user_id: int, plan: str | None) -> None:
        await self._change(
            guild_id, actor, "quota set", f"<@{user_id}>", plan or "no override",
            lambda tx: rules.set_member_rule(tx, guild_id, user_id, plan=plan),
        )  # fmt: skip

    async def set_role_plan(self, guild_id: int, actor: int, role_id: int, plan: str | None) -> None:
        await self._change(
            guild_id, actor, "quota role", f"<@&{role_id}>", plan or "removed",
            lambda tx: rules.set_role_plan(tx, guild_id, role_id, plan),
        )  # fmt: skip

    async def set_default_plan(self, guild_id: int, actor: int, plan: str) -> None:
        await self._change(
            guild_id, actor, "quota default", None, plan,
            lambda tx: pools.update(tx, guild_id, default_plan=plan),
        )  # fmt: skip

    async def reset_member(self, guild_id: int, actor: int, user_id: int) -> None:
        await self._change(
            guild_id, actor, "quota reset", f"<@{user_id}>", "windows restarted",
            lambda tx: rules.reset_windows(tx, guild_id, user_id),
        )  # fmt: skip

    async def block_member(self, guild_id: int, actor: int, user_id: int, reason: str | None) -> None:
        await self._change(
            guild_id, actor, "quota block", f"<@{user_id}>", reason or "no reason given",
            lambda tx: rules.set_member_rule(tx, guild_id, user_id, blocked=1, reason=reason),
        )  # fmt: skip

    async def unblock_member(self, guild_id: int, actor: int, user_id: int) -> None:
        await self._change(
            guild_id, actor, "quota unblock", f"<@{user_id}>", "",
            lambda tx: rules.set_member_rule(tx, guild_id, user_id, blocked=0, reason=None),
        )  # fmt: skip

    async def set_spoiler(self, guild_id: int, actor: int, channel_id: int, on: bool) -> None:
        """Results in this channel come as spoilers (or no longer do)."""
        await self._change(
            guild_id, actor, "animate-channels spoiler", f"<#{channel_id}>", "on" if on else "off",
            lambda tx: rules.set_spoiler(tx, guild_id, channel_id, on),
        )  # fmt: skip

    async def set_age_restricted_spoiler(self, guild_id: int, actor: int, on: bool) -> None:
        """Results in every channel Discord marks age-restricted come as spoilers (or not)."""
        await self._change(
            guild_id, actor, "animate-channels age-restricted", None, "spoiler" if on else "as others",
            lambda tx: pools.update(tx, guild_id, spoil_age_restricted=int(on)),
        )  # fmt: skip

    async def set_channel(self, guild_id: int, actor: int, channel_id: int, allowed: bool) -> None:
        await self._change(
            guild_id, actor, "animate-channels", f"<#{channel_id}>", "allow" if allowed else "deny",
            lambda tx: rules.set_channel_rule(tx, guild_id, channel_id, allowed),
        )  # fmt: skip

    async def topup(self, guild_id: int, actor: int, amount: int) -> Guild:
        if not 0 < amount <= MAX_TOPUP:
            raise ModerationError(say("a top-up must be between 1 and %(max)s credits", max=MAX_TOPUP))
        return await self._change(
            guild_id, actor, "pool topup", None, lambda guild: f"+{amount} -> {guild.balance}",
            lambda tx: pools.topup(tx, guild_id, amount, actor),
        )  # fmt: skip

    async def set_allowance(self, guild_id: int, actor: int, amount: int) -> None:
        if amount < 0:
            raise ModerationError(say("the allowance cannot be negative (0 removes it)"))
        await self._change(
            guild_id, actor, "pool allowance", None, f"{amount} per member per 24 h" if amount else "none",
            lambda tx: pools.update(tx, guild_id, daily_allowance=amount or None),
        )  # fmt: skip

    async def set_alert(self, guild_id: int, actor: int, threshold: int, channel_id: int) -> None:
        if threshold < 0:
            raise ModerationError(say("the alert line cannot be negative"))

        def change(tx: Tx) -> None:
            guild = pools.get(tx, guild_id)
            armed = guild is None or guild.balance >= threshold  # already below: wait for a top-up
            pools.update(tx, guild_id, low_balance_threshold=threshold, alert_channel_id=channel_id,
                         alert_armed=int(armed))  # fmt: skip

        await self._change(guild_id, actor, "pool alert", f"<#{channel_id}>", f"below {threshold}", change)

    async def resume_submitting(self, guild_id: int, actor: int) -> str | None:
        """Resume submitting to the API; returns why it had been paused (None: it was not).

        The stored pause (the leader's, whichever process leads) is lifted in the audited
        transaction, which wakes the leader; a short pause held in this process's memory
        only (a 429's wait) is lifted here. A resume the database could not record does not
        happen."""
        here = self.submitting.pause_reason

        def detail(stored: str | None) -> str:
            return stored or here or "not paused"

        stored = await self._change(guild_id, actor, "pool resume", None, detail, pause.lift)
        self.submitting.resume()
        return stored or here

    async def set_channel_defaults(
        self, guild_id: int, actor: int, channel_id: int, changes: OptionDefaults
    ) -> OptionDefaults:
        """Default /animate options in one channel (those not given stay as they were)."""
        changes = check(changes)
        return await self._change(
            guild_id, actor, "animate-defaults", f"<#{channel_id}>", lambda set_: str(describe(set_)),
            lambda tx: option_defaults.merge(tx, option_defaults.CHANNEL, channel_id, changes, actor),
        )  # fmt: skip

    async def clear_channel_defaults(self, guild_id: int, actor: int, channel_id: int) -> bool:
        return await self._change(
            guild_id, actor, "animate-defaults", f"<#{channel_id}>", "cleared",
            lambda tx: option_defaults.clear(tx, option_defaults.CHANNEL, channel_id),
        )  # fmt: skip

    async def channel_defaults(self, channel_id: int) -> OptionDefaults:
        return await self.store.defaults_of(option_defaults.CHANNEL, channel_id)

    async def add_prompt_rule(self, guild_id: int, actor: int, kind: str, text: str) -> PromptRule:
        """Block a word or pattern in this server's prompts. A pattern that does not compile, or
        a rule the server has already, is a :class:`ModerationError` and changes nothing."""
        try:
            text = check_rule(kind, text)
        except RuleError as exc:
            raise ModerationError(exc.text) from None

        def change(tx: Tx) -> PromptRule:
            rule = prompt_rules.add(tx, guild_id, kind, text, actor)
            if rule is None:  # raised inside: the transaction, audit row and all, rolls back
                raise ModerationError(say("this server already blocks that %(kind)s", kind=kind))
            return rule

        return await self._change(guild_id, actor, "filter add", None, _rule_detail, change)

    async def remove_prompt_rule(self, guild_id: int, actor: int, rule_id: int) -> PromptRule:
        def change(tx: Tx) -> PromptRule:
            rule = prompt_rules.remove(tx, guild_id, rule_id)
            if rule is None:
                raise ModerationError(say("this server has no filter rule #%(number)s", number=str(rule_id)))
            return rule

        return await self._change(guild_id, actor, "filter remove", None, _rule_detail, change)

    async def prompt_rules(self, guild_id: int) -> list[PromptRule]:
        return await self.store.prompt_rules(guild_id)

    async def test_prompt(self, guild_id: int, prompt: str) -> PromptRule | None:
        """The rule ``prompt`` would break here (the bot's list first), or None; changes nothing."""
        try:
            await self.prompt_filter.check(guild_id, prompt)
        except PromptBlocked as blocked:
            return blocked.rule
        return None

    async def recent_usage(self, guild_id: int, days: int = 30) -> RecentUsage:
        """The server's last ``days`` (UTC days, today last): credits its pool paid per day, and
        the ten members with the most jobs."""
        today = datetime.now(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, datetime.min.time(), UTC).timestamp()
        spent = {first + timedelta(days=n): 0 for n in range(days)}
        for at, credits in await self.store.spend_since(guild_id, since):
            day = datetime.fromtimestamp(at, UTC).date()
            if day in spent:
                spent[day] += credits
        return RecentUsage(sorted(spent.items()), await self.store.jobs_per_member(guild_id, since))

    async def pool_statement(self, guild_id: int, limit: int) -> tuple[Guild, list[LedgerRow]]:
        """The server's pool (its row created on first use) and its latest ledger rows."""
        guild = await self.store.ensure_guild(guild_id, self.policy.welcome_credits)
        return guild, await self.store.ledger_rows(guild_id, limit)

    async def audit_trail(self, guild_id: int, limit: int = 15) -> list[AuditRow]:
        """The latest moderator actions in a server, newest first."""
        return await self.store.audit_rows(guild_id, limit)

    async def member_summary(self, guild_id: int | None, user_id: int, roles: list[int]) -> MemberSummary:
        """A member's plan (and why), usage in each window, the pool and what they may spend."""
        store, policy = self.store, self.policy
        now = time.time()
        rule = await store.member_rule(guild_id, user_id) if guild_id is not None else None
        reset = rule.reset_at if rule and rule.reset_at else 0.0
        usage = await store.usage(
            user_id, guild_id, max(now - policy.windows.minute, reset), max(now - policy.windows.day, reset)
        )
        guild = await store.ensure_guild(guild_id, policy.welcome_credits) if guild_id is not None else None
        choice = await resolve_plan(store, policy, guild_id, user_id, roles, guild=guild, rule=rule)
        left = None
        if guild is not None and guild.daily_allowance is not None:
            spent = await store.member_spent(guild.guild_id, user_id, now - policy.windows.day)
            left = max(0, guild.daily_allowance - spent)
        return MemberSummary(
            plan=choice,
            active=usage.active,
            in_minute=usage.in_minute,
            in_day=usage.in_day,
            blocked=bool(rule and rule.blocked),
            balance=guild.balance if guild else None,
            allowance=guild.daily_allowance if guild else None,
            allowance_left=left,
        )


def _rule_detail(rule: PromptRule) -> str:
    # The audit names the rule by number and kind; its text stays in the moderators' /filter list.
    return f"{rule.kind} rule #{rule.id}"
