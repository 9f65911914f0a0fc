"""What the store hands in and out besides :class:`bot.jobs.Job`: plain, immutable records."""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs import JobOptions


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
    image_origin: str = "attachment"  # or "link" (a member's URL), "frame" (Continue), "file" (the CLI)
    image_sha256: str | None = None  # the kept picture (bot.store.pictures), when there is one
    spoiler: bool = False  # the result comes as a spoiler (bot.store.rules.spoiler_for)
    user_install: bool = False  # asked where the bot is not (bot.community.installs)
    asked_in_guild_id: int | None = None  # the server it was asked in, when the bot is not there
    locale: str | None = None  # the member's Discord locale (their card and result speak it)


@dataclass(frozen=True, slots=True)
class Picture:
    """A checked picture's bytes, kept so a job outlives its attachment URL."""

    sha256: str
    data: bytes
    mime: str


@dataclass(frozen=True, slots=True)
class OptionDefaults:
    """Default /animate options at one level (a channel, a member); None: not set there."""

    duration: int | None = None
    aspect_ratio: str | None = None
    motion: str | None = None
    version: str | None = None

    @property
    def empty(self) -> bool:
        return self == OptionDefaults()


@dataclass(frozen=True, slots=True)
class PromptRule:
    """A word or pattern a server (guild_id) or the bot's owner (None, id 0) will not animate."""

    id: int
    kind: str  # "word" or "pattern"
    text: str
    guild_id: int | None = None


@dataclass(frozen=True, slots=True)
class RequestSetting:
    """What a new job's request reads before its picture: the member's and the channel's
    default options, the server's prompt rules, and whether its result comes as a spoiler."""

    mine: OptionDefaults = OptionDefaults()
    channel: OptionDefaults = OptionDefaults()
    prompt_rules: tuple[PromptRule, ...] = ()
    spoiler: bool = False


@dataclass(frozen=True, slots=True)
class Guild:
    guild_id: int
    default_plan: str | None
    balance: int
    daily_allowance: int | None
    low_balance_threshold: int | None
    alert_channel_id: int | None
    alert_armed: bool
    modlog_channel_id: int | None = None  # where moderation events are posted (/modlog)
    showcase_channel_id: int | None = None  # where starred results are reposted (/showcase)
    showcase_threshold: int | None = None  # stars a result needs for it


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


@dataclass(frozen=True, slots=True)
class Standing:
    """A member's standing on one server, as admission reads it in one statement: their rule,
    the server's row (None before its first job), and whether /animate may run in a channel."""

    rule: MemberRule | None
    guild: Guild | None
    channel_open: bool
