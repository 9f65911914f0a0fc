"""The Discord side of the delivery protocol: post results, edit status cards, alert moderators.

The delivery rules stay in :mod:`bot.pipeline.delivery`; this class only knows how to reach
Discord with discord.py. The card itself (embed and buttons) is drawn by the cog that owns it,
through the renderer it registers on the client (:attr:`AnimateBot.render_card`).

Every post goes by id through REST (an interaction webhook, a partial messageable, a DM), so
it works for a job from any shard; only the channel route's permission check reads the cache,
which holds this process's shards' guilds alone.
"""

from __future__ import annotations

import io
import logging
import time
from datetime import UTC, datetime
from typing import Any

import discord

from bot.community.modlog import ABOUT, BY, DETAIL, ModEvent, title
from bot.discord_adapter.client import AnimateBot, shard_of
from bot.discord_adapter.limits import DEFAULT_UPLOAD_LIMIT, TOKEN_MARGIN
from bot.i18n import Message, render, say
from bot.jobs import Job, result_link
from bot.pipeline.delivery import Attachment, Messenger, Posted, Route, RouteUnavailable, UploadTooLarge

log = logging.getLogger(__name__)


class DiscordMessenger(Messenger):
    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot

    def _token_alive(self, job: Job) -> bool:
        return bool(job.interaction_token) and (job.token_expires_at or 0) - TOKEN_MARGIN > time.time()

    def _webhook(self, job: Job) -> discord.Webhook:
        assert self.bot.application_id is not None and job.interaction_token is not None
        return discord.Webhook.partial(self.bot.application_id, job.interaction_token, client=self.bot)

    def upload_limit(self, job: Job, route: Route) -> int | None:
        if route is Route.INTERACTION:
            return (job.upload_limit or DEFAULT_UPLOAD_LIMIT) if self._token_alive(job) else None
        if route is Route.CHANNEL:
            if job.channel_id is None:
                return None
            if job.guild_id is None:
                return DEFAULT_UPLOAD_LIMIT  # the DM the command came from
            channel = self.bot.get_channel(job.channel_id)
            if channel is None and not self.bot.serves_guild(job.guild_id):
                # Another process's shard: its guild is not in this cache, so neither are the
                # bot's permissions there. Post by id through REST at the smallest limit any
                # server has: a 403 or 404 moves on to the next route (so no send permission, or
                # no attach permission, means the DM), a 413 sends the link instead.
                return DEFAULT_UPLOAD_LIMIT
            if not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
                return None  # deleted, or no longer visible to the bot
            perms = channel.permissions_for(channel.guild.me)
            can_send = (
                perms.send_messages_in_threads if isinstance(channel, discord.Thread) else perms.send_messages
            )
            if not can_send:
                return None
            return channel.guild.filesize_limit if perms.attach_files else 0
        # A DM is the last resort for a job from a server, or from a place the bot is not in (a
        # user install); a DM job already used its channel.
        return (
            DEFAULT_UPLOAD_LIMIT if (job.guild_id is not None or job.user_install) and job.user_id else None
        )

    async def send(self, job: Job, route: Route, text: str, attachment: Attachment | None) -> Posted | None:
        files = [discord.File(io.BytesIO(attachment.data), attachment.filename)] if attachment else []
        view = self.bot.render_result(job) if self.bot.render_result is not None else discord.utils.MISSING
        message: discord.Message | discord.WebhookMessage
        try:
            if route is Route.INTERACTION:
                message = await self._webhook(job).send(content=text, files=files, view=view, wait=True)
            elif route is Route.CHANNEL:
                assert job.channel_id is not None
                message = await self.bot.get_partial_messageable(job.channel_id).send(
                    content=text, files=files, view=view
                )
            else:
                message = await (await self._requester(job)).send(content=text, files=files, view=view)
            return Posted(message.channel.id, message.id)
        except discord.HTTPException as exc:
            if exc.status == 413 or exc.code == 40005:
                raise UploadTooLarge from None
            if exc.status in (401, 403, 404):
                raise RouteUnavailable(f"{exc.status} {exc.code}: {exc.text}") from None
            raise

    def owns_card(self, job: Job) -> bool:
        own, count = self.bot.own_shard_ids, self.bot.shard_count
        if own is None or count is None:  # before the shard count is known: the only process
            return True
        # A DM's events come to shard 0, as Discord sends them.
        return (shard_of(job.guild_id, count) if job.guild_id is not None else 0) in own

    async def alert(self, channel_id: int | None, text: Message) -> None:
        if channel_id is None:
            log.warning("alert with no alert channel set: %s", text)
            return
        try:
            await self.bot.get_partial_messageable(channel_id).send(
                render(text, self.server_locale(channel_id))
            )
        except discord.HTTPException as exc:
            log.warning("alert to channel %s failed (%s %s): %s", channel_id, exc.status, exc.code, text)

    def server_locale(self, channel_id: int) -> str | None:
        """The language of the server a channel is in: its preferred locale, which Discord
        sends its members' interactions as ``guild_locale`` (None: not in this process's cache)."""
        guild = getattr(self.bot.get_channel(channel_id), "guild", None)
        return str(guild.preferred_locale) if isinstance(guild, discord.Guild) else None

    async def post(self, channel_id: int, event: ModEvent) -> None:
        """A moderation event in the server's mod log channel, as an embed in the server's language
        (the audit's own words, target and detail, as they were recorded)."""
        locale = self.server_locale(channel_id)
        embed = discord.Embed(title=render(title(event.action), locale), colour=discord.Colour.orange())
        embed.add_field(name=render(BY, locale), value=f"<@{event.actor_id}>", inline=True)
        if event.target:
            embed.add_field(name=render(ABOUT, locale), value=event.target[:1024], inline=True)
        if event.detail:
            embed.add_field(name=render(DETAIL, locale), value=event.detail[:1024], inline=False)
        view = discord.utils.MISSING
        if event.job_id is not None and self.bot.render_report is not None:
            view = self.bot.render_report(event.job_id, locale)
        try:
            await self.bot.get_partial_messageable(channel_id).send(
                embed=embed, view=view, allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException as exc:
            log.warning("mod log post to channel %s failed (%s %s)", channel_id, exc.status, exc.code)

    async def showcase(self, channel_id: int, job: Job) -> None:
        """A result reposted to the showcase: credited to its requester, with a link back."""
        link = result_link(job)
        by = say("⭐ **Showcase**: an animation by %(member)s", member=f"<@{job.user_id}>")
        text = f"{render(by, self.server_locale(channel_id))}\n> {job.options.prompt[:300]}"
        text += f"\n{link}" if link else ""
        await self.bot.get_partial_messageable(channel_id).send(
            text,
            allowed_mentions=discord.AllowedMentions.none(),  # credited, not pinged
        )

    async def find_sent(self, job: Job, since: float) -> bool | None:
        """Look for the bot's message naming this job, posted since ``since``, wherever the
        routes post: the job's channel (follow-ups land there too) and the member's DMs."""
        me = self.bot.user
        if me is None:
            return None
        after = discord.Object(id=discord.utils.time_snowflake(datetime.fromtimestamp(since - 5, UTC)))
        places: list[discord.abc.Messageable] = []
        if job.channel_id is not None and not job.user_install:  # not a channel the bot can read
            places.append(self.bot.get_partial_messageable(job.channel_id))
        try:
            if job.user_id is not None:
                user = await self._requester(job)
                places.append(user.dm_channel or await user.create_dm())
            for place in places:
                # Bounded: the send was seconds before the crash; 300 messages is a busy minute.
                async for message in place.history(after=after, limit=300):
                    if message.author.id == me.id and f"`{job.id}`" in message.content:
                        return True
        except discord.HTTPException as exc:  # no history access here: cannot tell
            log.info("job=%s history not readable (%s %s)", job.id, exc.status, exc.code)
            return None
        return False

    async def _requester(self, job: Job) -> discord.User:
        assert job.user_id is not None
        return self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)

    async def show_status(self, job: Job, detail: Message) -> None:
        if job.status_message_id is None or self.bot.render_card is None:
            return
        embed, view = self.bot.render_card(job, detail)
        kwargs: dict[str, Any] = {"embed": embed, "view": view}
        if self._token_alive(job):
            try:
                await self._webhook(job).edit_message(job.status_message_id, **kwargs)
                return
            except discord.HTTPException as exc:
                log.debug("job=%s card edit by token failed (%s); using the bot's token", job.id, exc.status)
        if job.status_channel_id is None or job.user_install:  # the bot's token cannot edit it there
            return
        message = self.bot.get_partial_messageable(job.status_channel_id).get_partial_message(
            job.status_message_id
        )
        try:
            await message.edit(**kwargs)
        except discord.HTTPException as exc:
            log.info("job=%s status card not editable (%s %s)", job.id, exc.status, exc.code)
