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

from bot.i18n import Message, Text, say
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModEvent:
    action: str  # as in the audit table: "quota block", "prompt refused", "result delete", ...
    actor_id: int  # who did it (for a refused prompt: the member who asked)
    target: str | None = None  # a mention or a job, as the audit row has it
    detail: str | None = None
    job_id: str | None = None  # a reported result: the post offers moderators Delete and Block


# How each audited action is titled in the mod log, in the server's language. The msgid is the
# action's own name (as the audit table keeps it), which is also the English title.
TITLES: dict[str, Text] = {
    "modlog": say("modlog"),
    "showcase": say("showcase"),
    "quota set": say("quota set"),
    "quota role": say("quota role"),
    "quota default": say("quota default"),
    "quota reset": say("quota reset"),
    "quota block": say("quota block"),
    "quota unblock": say("quota unblock"),
    "animate-channels": say("animate-channels"),
    "animate-channels spoiler": say("animate-channels spoiler"),
    "animate-channels age-restricted": say("animate-channels age-restricted"),
    "animate-defaults": say("animate-defaults"),
    "pool topup": say("pool topup"),
    "pool allowance": say("pool allowance"),
    "pool alert": say("pool alert"),
    "pool resume": say("pool resume"),
    "filter add": say("filter add"),
    "filter remove": say("filter remove"),
    "prompt refused": say("prompt refused"),
    "result delete": say("result delete"),
    "result report": say("result report"),
}
# The post's field names.
BY, ABOUT, DETAIL = say("By"), say("About"), say("Detail")


def title(action: str) -> Message:
    """An action's title in the mod log; an action with none is shown by its name."""
    return TITLES.get(action, action)


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
