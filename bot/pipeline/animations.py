"""What a member's request for an animation does, without Discord: /animate, Animate again, cancel.

The command adapters (``cogs/``) parse what Discord sent and render the answer; everything in
between is here: read and check the picture, admit the job (quota, pool and job row in one
transaction), tell the pool's moderators when it ran low, hand the job to the pipeline.
Refusals are exceptions whose text is written for the member.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from bot.community.admission import Admitted, Policy, Refused, admit, low_balance_alert
from bot.community.defaults import check, choose
from bot.community.modlog import ModEvent, ModLog, announce
from bot.community.prompt_filter import PromptBlocked, PromptFilter, label
from bot.i18n import say
from bot.jobs import Job, JobOptions, may_manage, result_link
from bot.media.attachment_url import expired
from bot.media.fetch import FetchError, fetch_bytes
from bot.media.image import InvalidImage, check_image_size, validate_image
from bot.media.link import LinkFetcher, LinkRefused
from bot.media.video import InvalidVideo, last_frame
from bot.metrics import Metrics
from bot.pipeline.delivery import MAX_VIDEO_BYTES
from bot.pipeline.pipeline import JobBusy, Pipeline
from bot.store import (
    NewJob,
    OptionDefaults,
    Picture,
    RequestSetting,
    Store,
    StoreUnavailable,
    option_defaults,
)
from shared import contract

# Measured (bench/bench_budget.py, 500 at once): 8 keeps the API's slots busy from the first
# second; unbounded, the first seconds went to 500 image fetches and a queue on the write lock.
ADMISSIONS_AT_ONCE: Final = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where the picture comes from: a fresh attachment, a member's link, or an old job's URL
    (Animate again, which fetches it as the first job did)."""

    url: str
    size: int | None = None  # when the sender declared it: a 50 MB upload is refused unread
    declared_type: str | None = None
    origin: str = "attachment"  # "link": a member's URL, fetched from public addresses only
    sha256: str | None = None  # an earlier job's kept picture, for when the URL has expired
    data: bytes | None = None  # the picture itself, when the bot made it (Continue's last frame)


@dataclass(frozen=True, slots=True)
class Keeping:
    """How long, and how much, of the checked pictures the store keeps (0: none)."""

    max_bytes: int = 512 * 1024 * 1024
    max_age: float = 7 * 24 * 3600.0

    @property
    def on(self) -> bool:
        return self.max_bytes > 0 and self.max_age > 0


@dataclass(frozen=True, slots=True)
class Wanted:
    """A new /animate as the member typed it: the prompt and the options given. Those left out
    come from the member's and the channel's defaults (:mod:`bot.community.defaults`)."""

    prompt: str
    given: OptionDefaults

    @property
    def complete(self) -> bool:
        g = self.given
        return None not in (g.duration, g.aspect_ratio, g.motion, g.version)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, and where the answer goes (the interaction's token and upload limit)."""

    user_id: int
    guild_id: int | None
    channel_id: int | None
    role_ids: tuple[int, ...] = ()
    interaction_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: float | None = None
    upload_limit: int | None = None
    age_restricted: bool = False  # the channel is marked age-restricted (NSFW) by Discord
    # Asked where the bot is not (bot.community.installs): guild_id is then None (paid like a
    # DM) and asked_in_guild_id the server it was used in, for display.
    user_install: bool = False
    asked_in_guild_id: int | None = None
    locale: str | None = None  # the member's Discord locale (interaction.locale)


class NotRecorded(Refused):
    """The database is out of reach (a lost connection, a restart): nothing can be admitted."""

    def __init__(self) -> None:
        super().__init__(
            say(
                "I can't record new animations right now: my database is out of reach for a moment. "
                "Please try again shortly."
            )
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    job: Job
    position: int | None  # 1 + the queued jobs accepted before it; None when it could not be read


class Cancelled(enum.Enum):
    DONE = "done"
    NO_SUCH_JOB = "no such job"
    NOT_YOURS = "not yours"
    BUSY = "being submitted"  # try again in a few seconds
    ALREADY_ENDED = "already ended"


class Reported(enum.Enum):
    DONE = "done"
    NO_SUCH_JOB = "no such job"
    OWN = "own result"  # they can delete it themselves
    ALREADY = "already reported"
    NOT_HERE = "not in a server"  # no moderators to tell


class Removed(enum.Enum):
    DONE = "done"
    NO_SUCH_JOB = "no such job"
    NOT_YOURS = "not yours"


class Animations:
    def __init__(
        self, store: Store, pipeline: Pipeline, policy: Policy, *, metrics: Metrics | None = None,
        links: LinkFetcher | None = None, prompt_filter: PromptFilter | None = None,
        keeping: Keeping | None = None, modlog: ModLog | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.pipeline = pipeline
        self.policy = policy
        self.metrics = metrics
        self.links = links or LinkFetcher()  # whoever made it closes it (services.py does)
        self.prompt_filter = prompt_filter or PromptFilter(store)
        self.keeping = keeping or Keeping()
        self.modlog = modlog
        # A few at a time: a burst of hundreds would otherwise crowd the image fetches and the
        # store's write lock all at once, starving the defers of later commands and the scheduler.
        self._slots = asyncio.Semaphore(ADMISSIONS_AT_ONCE)

    async def request(
        self, source: ImageSource, options: JobOptions | Wanted, requester: Requester
    ) -> Accepted:
        """Complete the options from the defaults (when :class:`Wanted`), check the prompt and
        the picture and admit the job; raises InvalidOptions, InvalidImage or a Refused
        (PromptBlocked, QuotaExceeded, Blocked, ChannelClosed, PoolShort, AllowanceShort;
        NotRecorded while the database is out of reach) with nothing written."""
        setting = await self._setting(options, requester)
        if isinstance(options, Wanted):
            options = choose(options.prompt, options.given, setting.mine, setting.channel)
        try:
            self.prompt_filter.judge(options.prompt, setting.prompt_rules)  # before any fetch
        except PromptBlocked as blocked:
            who = requester.user_id
            said = f"{label(blocked.rule)} · {options.prompt[:300]}"
            await self._note(requester.guild_id, who, "prompt refused", f"<@{who}>", said)
            raise
        async with self._slots:
            began = time.monotonic()
            picture = await self._read_source(source)
            new = NewJob(
                source=self.pipeline.options.source,
                image_ref=source.url,
                options=options,
                user_id=requester.user_id,
                guild_id=requester.guild_id,
                channel_id=requester.channel_id,
                interaction_id=requester.interaction_id,
                interaction_token=requester.interaction_token,
                token_expires_at=requester.token_expires_at,
                upload_limit=requester.upload_limit,
                image_origin=source.origin,
                image_sha256=picture.sha256,
                spoiler=setting.spoiler,
                user_install=requester.user_install,
                asked_in_guild_id=requester.asked_in_guild_id,
                locale=requester.locale,
            )
            try:
                admitted = await admit(self.store, new, self.policy, roles=list(requester.role_ids))
            except StoreUnavailable as exc:
                log.warning("admission refused: %s", exc)
                raise NotRecorded from exc
            if self.metrics is not None:
                self.metrics.admission_seconds.observe(time.monotonic() - began)
            await self._alert_if_low(admitted)
            if source.origin != "link":  # a link stays fetchable: only Discord's URLs and frames do not
                await self._keep(picture)
            try:
                position = await self.store.queue_position(admitted.job)
            except StoreUnavailable:  # admitted all the same: the card shows no number
                position = None
            return Accepted(admitted.job, position)

    async def _setting(self, options: JobOptions | Wanted, requester: Requester) -> RequestSetting:
        """Everything the request reads before its picture, in one store call: the defaults
        (only for options left out), the server's prompt rules, the channel's spoiler setting."""
        try:
            return await self.store.request_setting(
                requester.user_id,
                requester.guild_id,
                requester.channel_id,
                age_restricted=requester.age_restricted,
                defaults=isinstance(options, Wanted) and not options.complete,
            )
        except StoreUnavailable as exc:
            log.warning("request settings unreadable: %s", exc)
            raise NotRecorded from exc

    async def my_defaults(self, user_id: int) -> OptionDefaults:
        """A member's own default options (/settings)."""
        return await self.store.defaults_of(option_defaults.MEMBER, user_id)

    async def set_my_defaults(self, user_id: int, changes: OptionDefaults) -> OptionDefaults:
        return await self.store.set_member_defaults(user_id, check(changes))

    async def clear_my_defaults(self, user_id: int) -> bool:
        return await self.store.clear_member_defaults(user_id)

    async def again(self, job_id: str) -> tuple[ImageSource, JobOptions] | None:
        """The picture and options of an earlier job (Animate again), or None if it is gone.

        The options are checked again (InvalidOptions): a stored row is read unchecked, and an
        option retired since must be refused, not sent. NotRecorded while the database is away.
        """
        try:
            job = await self.store.get_job(job_id)
        except StoreUnavailable as exc:
            raise NotRecorded from exc
        if job is None:
            return None
        source = ImageSource(job.image_ref, origin=job.image_origin, sha256=job.image_sha256)
        return source, _checked_options(job)

    async def info(self, job_id: str) -> Job | None:
        """A job as recorded (the result's Info button), or None when it is gone."""
        return await self.store.get_job(job_id)

    async def recent(self, user_id: int, limit: int = 10) -> list[Job]:
        """A member's latest jobs, newest first (/jobs)."""
        return await self.store.recent_jobs(user_id, limit)

    async def card_shown(self, job: Job, channel_id: int, message_id: int) -> None:
        """Where the job's status card is, so it can be edited after the interaction token died."""
        try:
            await self.store.set_status_card(job.id, channel_id, message_id)
        except StoreUnavailable as exc:  # the job is admitted: only later card edits lose their way
            log.warning("job=%s status card not recorded: %s", job.id, exc)

    def start(self, job: Job) -> None:
        """Hand an admitted job to the pipeline (after its card is shown, so edits find it)."""
        self.pipeline.accepted(job)

    async def cancel(
        self, job_id: str, user_id: int, *, moderator_of: int | None, by: str
    ) -> tuple[Cancelled, Job | None]:
        """Cancel a job for its requester or a moderator of its server."""
        job = await self.store.get_job(job_id.strip().lower())
        if job is None:
            return Cancelled.NO_SUCH_JOB, None
        if not may_manage(job, user_id, moderator_of=moderator_of):
            return Cancelled.NOT_YOURS, job
        try:
            cancelled = await self.pipeline.cancel(job, say("cancelled by %(who)s", who=by))
        except JobBusy:
            return Cancelled.BUSY, job
        if cancelled is None:
            return Cancelled.ALREADY_ENDED, job
        return Cancelled.DONE, cancelled

    async def delete_result(
        self, job_id: str, user_id: int, *, moderator_of: int | None, by: str,
        remove: Callable[[Job], Awaitable[None]],
    ) -> Removed:  # fmt: skip
        """Remove a job's result message (``remove``: the Discord side) for its requester or a
        moderator of its server; the job row stays. In a server the deletion is audited and
        the status card says who removed it."""
        job = await self.store.get_job(job_id)
        if job is None:
            return Removed.NO_SUCH_JOB
        if not may_manage(job, user_id, moderator_of=moderator_of):
            return Removed.NOT_YOURS
        await remove(job)
        await self._note(job.guild_id, user_id, "result delete", f"job {job.id}", by)
        await self.pipeline.messenger.show_status(job, say("🗑️ result deleted by %(who)s", who=by))
        return Removed.DONE

    async def report(self, job_id: str, reporter_id: int) -> Reported:
        """A member reports a result to the server's moderators: audited, and posted to the mod
        log with Delete and Block offered; once per member and result."""
        job = await self.store.get_job(job_id)
        if job is None:
            return Reported.NO_SUCH_JOB
        if job.guild_id is None:
            return Reported.NOT_HERE
        if job.user_id == reporter_id:
            return Reported.OWN
        if not await self.store.report(job.id, reporter_id):
            return Reported.ALREADY
        link = result_link(job)
        said = f"<@{job.user_id}>'s result: {job.options.prompt[:300]}{f' · {link}' if link else ''}"
        await self._note(job.guild_id, reporter_id, "result report", f"job {job.id}", said, job_id=job.id)
        return Reported.DONE

    async def _note(
        self,
        guild_id: int | None,
        actor: int,
        action: str,
        target: str,
        detail: str,
        *,
        job_id: str | None = None,
    ) -> None:
        """Audit an event in a server, and post it to the server's mod log."""
        if guild_id is None:
            return
        try:
            await self.store.moderate(
                guild_id, self.policy.welcome_credits, actor, action, target, detail, lambda tx: None
            )
        except Exception:  # the member's answer does not wait on the moderators' record
            log.exception("%s not audited in server %s", action, guild_id)
            return
        await announce(self.store, self.modlog, guild_id, ModEvent(action, actor, target, detail, job_id))

    async def continuation(self, job_id: str) -> tuple[ImageSource, JobOptions] | None:
        """The last frame of a job's video and the job's options (Continue: the next clip
        starts where this one ended), or None if the job is gone. InvalidImage when there is no
        video to continue, or the bot keeps no pictures (the frame reaches the API as a kept
        picture)."""
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        options = _checked_options(job)
        if job.outcome != "completed" or not job.result_url:
            raise InvalidImage(say("only a finished video can be continued"))
        if not self.keeping.on:
            raise InvalidImage(say("Continue is off on this bot: it keeps no pictures (PICTURE_KEEP_MB)"))
        try:
            video = await fetch_bytes(self.pipeline.http, job.result_url, max_bytes=MAX_VIDEO_BYTES)
            frame = await asyncio.to_thread(last_frame, video)
        except (FetchError, InvalidVideo) as exc:
            raise InvalidImage(
                say(
                    "the video's last frame could not be read (%(error)s); its link may have expired",
                    error=exc.text if isinstance(exc, FetchError) else str(exc),
                )
            ) from None
        return ImageSource(job.result_url, origin="frame", data=frame), options

    async def _read_source(self, source: ImageSource) -> Picture:
        """The checked picture, from the link, the attachment, or (its URL expired) the store."""
        if source.data is not None:
            return await _checked(source.data, None)
        if source.origin == "link":
            try:
                data, _ = await self.links.fetch(source.url, max_bytes=contract.MAX_IMAGE_BYTES)
            except LinkRefused as exc:
                raise InvalidImage(say("that link can't be used: %(reason)s", reason=exc.text)) from None
            except FetchError as exc:
                raise InvalidImage(
                    say("the image could not be fetched from the link: %(reason)s", reason=exc.text)
                ) from None
            # What the server calls it is not checked: the bytes are (sniffed and decoded).
            return await _checked(data, None)
        if source.sha256 is not None and expired(source.url, time.time()):  # an old card's picture
            kept = await self.store.picture(source.sha256)
            if kept is None:
                raise InvalidImage(
                    say(
                        "that picture's Discord link has expired and it is no longer kept here; "
                        "attach it again"
                    )
                )
            return kept
        if source.size is not None:
            check_image_size(source.size)  # refuse a 50 MB upload without downloading it
        try:
            data = await fetch_bytes(self.pipeline.http, source.url, max_bytes=contract.MAX_IMAGE_BYTES)
        except FetchError as exc:
            raise InvalidImage(
                say("the image could not be read from Discord (%(error)s); attach it again", error=exc.text)
            ) from None
        return await _checked(data, source.declared_type)

    async def _keep(self, picture: Picture) -> None:
        """Keep the picture of an admitted job, so it outlives its attachment URL; a failure
        costs only that (the job goes on with its URL)."""
        if not self.keeping.on:
            return
        try:
            await self.store.keep_picture(
                picture, max_bytes=self.keeping.max_bytes, max_age=self.keeping.max_age
            )
        except Exception:
            log.exception("picture %s not kept", picture.sha256[:12])

    async def _alert_if_low(self, admitted: Admitted) -> None:
        guild = admitted.low_balance
        if guild is not None:
            await self.pipeline.messenger.alert(guild.alert_channel_id, low_balance_alert(guild))


def _checked_options(job: Job) -> JobOptions:
    """A stored job's options, checked again (InvalidOptions): a row is read unchecked, and an
    option retired since must be refused, not sent."""
    o = job.options
    return JobOptions(
        prompt=o.prompt, duration=o.duration, aspect_ratio=o.aspect_ratio, motion=o.motion, version=o.version
    )


async def _checked(data: bytes, declared_type: str | None) -> Picture:
    info = await asyncio.to_thread(validate_image, data, declared_type)
    return Picture(hashlib.sha256(data).hexdigest(), data, info.mime)
