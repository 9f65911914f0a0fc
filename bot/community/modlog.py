"""The mod log: moderation events posted to the channel a server's moderators chose (/modlog).

Every audited moderator action (quota changes, blocks, top-ups, channel rules, filter rules,
result deletions) and every refused prompt is also posted there, as an embed, when the server
has a mod log channel; the audit table keeps them either way. Posting is a courtesy after the
commit: a channel the bot cannot post in costs a log line, never the action itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from bot.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModEvent:
    action: str  # as in the audit table: "quota block", "prompt refused", "result delete", ...
    actor_id: int  # who did it (for a refused prompt: the member who asked)
    target: str | None = None  # a mention or a job, as the audit row has it
    detail: str | None = None
    job_id: str | None = None  # a reported result: the post offers moderators Delete and Block


class ModLog(Protocol):
    """Where events go: the Discord side posts them as embeds."""

    async def post(self, channel_id: int, event: ModEvent) -> None: ...


async def announce(store: Store, sink: ModLog | None, guild_id: int, event: ModEvent) -> None:
    """Post ``event`` to the server's mod log channel, if it has one."""
    if sink is None:
        return
    try:
        guild = await store.get_guild(guild_id)
        if guild is not None and guild.modlog_channel_id is not None:
            await sink.post(guild.modlog_channel_id, event)
    except Exception:  # the action is done and audited; the post is a courtesy
        log.exception("mod log post failed for server %s: %s", guild_id, event.action)
