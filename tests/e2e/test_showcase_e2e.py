"""The showcase through the Discord fake: ⭐ from members other than the requester, reposted once
at the threshold, not again when stars come and go, nor after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from testkit.e2e_world import World, world
from tests.e2e.test_quota_e2e import command
from tests.e2e.test_results_e2e import result_of

pytestmark = pytest.mark.timeout(240)


def reposts(w: World, channel: Any) -> list[Any]:
    return [e for e in w.fake.events if e.kind == "create" and e.channel_id == channel.id]


async def settle() -> None:
    await asyncio.sleep(1.0)  # the reactions' gateway events reach the bot and its store


async def test_a_result_is_showcased_once_at_the_threshold(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        stage = w.fake.add_text_channel(w.guild, "showcase")
        carol = w.fake.add_user("carol")
        w.fake.add_member(w.guild, carol)
        said = (await command(w, "showcase channel", channel=stage, threshold=2)).content
        assert "2 ⭐" in said
        result = await result_of(w, w.alice)
        w.fake.react(result.message, w.alice)  # the requester's own star does not count
        w.fake.react(result.message, w.bob)
        w.fake.react(result.message, w.bob, "🔥")  # not a star
        await settle()
        assert reposts(w, stage) == []
        w.fake.react(result.message, w.mod)  # two members besides the requester
        posted = await w.fake.wait_for(lambda e: e.kind == "create" and e.channel_id == stage.id, timeout=15)
        assert f"<@{w.alice.id}>" in posted.content and "the sea moves" in posted.content
        assert f"/{result.message.id}" in posted.content  # a link back to the result

        w.fake.react(result.message, w.bob, add=False)  # below the threshold, then back up
        await settle()
        w.fake.react(result.message, w.bob)
        await settle()
        assert len(reposts(w, stage)) == 1
        await w.bot.stop()
        await w.bot.start()
        await w.fake.wait_for_ready(timeout=30, count=2)
        w.fake.react(result.message, carol)
        await settle()
        assert len(reposts(w, stage)) == 1  # a restart does not repost
