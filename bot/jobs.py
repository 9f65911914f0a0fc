"""What a job is: its options, its states and the only moves between them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bot.i18n import Text, TextError, say
from shared import contract


class JobState(StrEnum):
    QUEUED = "queued"  # accepted and recorded; not yet sent to the API
    SUBMITTING = "submitting"  # a create call may be in flight (the idempotency key makes a retry safe)
    PROCESSING = "processing"  # the API has the job
    COMPLETED = "completed"  # the API finished it; the video is not delivered yet
    FAILED = "failed"  # the API (or we) gave up on it; the reason is not delivered yet
    CANCELLED = "cancelled"  # the requester or a moderator stopped it
    EXPIRED = "expired"  # it took longer than we wait; the notice is not delivered yet
    DELIVERED = "delivered"  # the result or the reason reached the requester


# The whole state machine. The store refuses any move not listed here.
TRANSITIONS: Final[dict[JobState, frozenset[JobState]]] = {
    JobState.QUEUED: frozenset({JobState.SUBMITTING, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED}),
    JobState.SUBMITTING: frozenset(
        {
            JobState.PROCESSING,
            JobState.COMPLETED,  # an idempotent replay can answer with a job that already ended
            JobState.FAILED,
            JobState.QUEUED,  # a retryable refusal (rate limit, API down): wait for the next slot
            JobState.CANCELLED,
            JobState.EXPIRED,
        }
    ),
    JobState.PROCESSING: frozenset(
        {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED}
    ),
    JobState.COMPLETED: frozenset({JobState.DELIVERED}),
    JobState.FAILED: frozenset({JobState.DELIVERED}),
    JobState.EXPIRED: frozenset({JobState.DELIVERED}),
    JobState.CANCELLED: frozenset(),
    JobState.DELIVERED: frozenset(),
}

IN_FLIGHT: Final = frozenset({JobState.QUEUED, JobState.SUBMITTING, JobState.PROCESSING})
AWAITING_DELIVERY: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.EXPIRED})


class IllegalTransition(Exception):
    """A move the state machine does not allow (or the job moved on meanwhile)."""

    def __init__(self, job_id: str, current: JobState | None, target: JobState) -> None:
        self.job_id = job_id
        self.current = current
        self.target = target
        super().__init__(f"job {job_id}: cannot move from {current} to {target}")


def can_transition(current: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[current]


class InvalidOptions(TextError, ValueError):
    """An option outside what the API takes; the message says which and what is allowed."""


@dataclass(frozen=True, slots=True)
class JobOptions:
    prompt: str
    duration: int = contract.DEFAULT_DURATION
    aspect_ratio: str = contract.DEFAULT_ASPECT_RATIO
    motion: str = contract.DEFAULT_MOTION
    version: str = contract.DEFAULT_VERSION

    def __post_init__(self) -> None:
        prompt = self.prompt.strip()
        if not prompt:
            raise InvalidOptions(say("prompt is empty: describe what should happen in the video"))
        if len(prompt) > contract.MAX_PROMPT_CHARS:
            raise InvalidOptions(
                say(
                    "prompt is %(length)s characters; the limit is %(limit)s",
                    length=len(prompt),
                    limit=contract.MAX_PROMPT_CHARS,
                )
            )
        _check_choice(say("duration"), self.duration, contract.DURATIONS)
        _check_choice(say("aspect ratio"), self.aspect_ratio, contract.ASPECT_RATIOS)
        _check_choice(say("motion"), self.motion, contract.MOTIONS)
        _check_choice(say("version"), self.version, contract.VERSIONS)
        object.__setattr__(self, "prompt", prompt)

    @property
    def estimated_credits(self) -> int:
        return contract.credit_cost(self.version, self.duration, self.motion)


def _check_choice(name: Text, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise InvalidOptions(
            say(
                "%(option)s %(value)s is not one of %(allowed)s",
                option=name,
                value=repr(value),
                allowed=", ".join(map(str, allowed)),
            )
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the jobs table."""

    id: str
    idempotency_key: str
    state: JobState
    source: str  # "discord" or "cli"
    image_ref: str  # where the image is: an https URL, or a local file:// path for the CLI
    options: JobOptions
    estimated_credits: int
    created_at: float
    updated_at: float
    user_id: int | None = None
    guild_id: int | None = None
    channel_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: float | None = None
    api_job_id: str | None = None
    actual_credits: int | None = None
    result_url: str | None = None
    error: str | None = None
    submitted_at: float | None = None
    completed_at: float | None = None
    delivered_at: float | None = None
    status_channel_id: int | None = None
    status_message_id: int | None = None
    upload_limit: int | None = None  # the interaction's attachment_size_limit
    outcome: str | None = None  # completed, failed, cancelled or expired, once ended
    delivery_note: str | None = None  # how (or why not) the result reached the person
    delivery_started_at: float | None = None  # first attempt to send the result (crash safety)
    image_origin: str = "attachment"  # or "link" (a member's URL), "frame" (Continue), "file" (the CLI)
    image_sha256: str | None = None  # its picture, kept for a while (bot.store.pictures)
    plan: str | None = None  # the plan that admitted it (None: the CLI's, no plan)
    plan_why: str | None = None  # why that plan applied: "role <id>", "server default", ...
    result_channel_id: int | None = None  # where the result was posted (once delivered)
    result_message_id: int | None = None
    spoiler: bool = False  # the result comes as a spoiler (its channel's setting at admission)
    # Asked where the bot is not (bot.community.installs): paid like a DM (guild_id None),
    # answered through the token, then by DM; asked_in_guild_id: that server, for display.
    user_install: bool = False
    asked_in_guild_id: int | None = None
    locale: str | None = None  # the member's Discord locale: their card and result speak it

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT


def awaits_the_apis_end(job: Job) -> bool:
    """A job that ended here while the API had it (cancelled, or expired waiting for it): the
    API has no cancel call, runs it to its end and bills the account then, so its pool is
    settled only when that end is seen."""
    return job.api_job_id is not None and job.outcome in ("cancelled", "expired")


# What the scheduler and the poller call when a job moves on (submitted, ended).
JobHook = Callable[[Job], Awaitable[None]]


def may_manage(job: Job, user_id: int, *, moderator_of: int | None) -> bool:
    """The requester may cancel their job or delete its result; so may a moderator of the
    server it runs in.

    ``moderator_of`` is the server where the caller is a moderator (None if nowhere here).
    """
    return job.user_id == user_id or (moderator_of is not None and job.guild_id == moderator_of)


def result_link(job: Job) -> str | None:
    """A link to the job's result message in its server (None: not posted in a server, or
    posted before results were located)."""
    if job.guild_id is None or job.result_channel_id is None or job.result_message_id is None:
        return None
    return f"https://discord.com/channels/{job.guild_id}/{job.result_channel_id}/{job.result_message_id}"
