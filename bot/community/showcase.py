"""The showcase: a result that reaches a server's threshold of ⭐ from members other than its
requester is reposted once to the showcase channel, crediting the requester, with a link back.

Stars are kept per member and result (bot.store.showcase): taking one back counts down, a
restart counts on from where it was, and a result is reposted once (showcased_at), however the
stars move afterwards.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from bot.jobs import Job
from bot.store import Store

log = logging.getLogger(__name__)

STAR: Final = "⭐"


class ShowcasePost(Protocol):
    """The Discord side: repost a result in the showcase channel."""

    async def showcase(self, channel_id: int, job: Job) -> None: ...


class Showcase:
    def __init__(self, store: Store, poster: ShowcasePost | None = None) -> None:
        self.store = store
        self.poster = poster

    async def reaction(self, message_id: int, user_id: int, emoji: str, added: bool) -> bool:
        """A reaction added (or removed) on a message; True when it put a result in the showcase."""
        if emoji != STAR:
            return False
        found = await self.store.star(message_id, user_id, added)
        if found is None or not added:
            return False
        job, stars = found
        if job.guild_id is None:
            return False
        guild = await self.store.get_guild(job.guild_id)
        channel_id = guild.showcase_channel_id if guild is not None else None
        threshold = guild.showcase_threshold if guild is not None else None
        if channel_id is None or not threshold or stars < threshold:
            return False
        if not await self.store.mark_showcased(job.id):  # reposted already: once is the rule
            return False
        if self.poster is not None:
            try:
                await self.poster.showcase(channel_id, job)
            except Exception:  # marked, so never twice; a lost repost is logged
                log.exception("job=%s showcase repost failed", job.id)
        return True
