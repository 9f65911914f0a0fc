"""Spoilers through the Discord fake: results in a channel the moderators chose, and in
age-restricted channels once the server says so, arrive as spoiler files; elsewhere they do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.e2e_world import PNG, World, world
from tests.e2e.test_quota_e2e import command

pytestmark = pytest.mark.timeout(240)


async def file_of(w: World, channel: Any) -> str:
    it = await w.fake.invoke_slash(
        "animate", user=w.alice, guild=w.guild, channel=channel,
        options={"prompt": "the sea moves", "version": "gen-2"},
        attachments={"image": (PNG, "p.png", "image/png")},
    )  # fmt: skip
    await it.wait_acknowledged(timeout=3)
    done = await w.fake.wait_for(
        lambda e: e.kind == "create" and e.interaction_id in (it.id, None) and bool(e.attachments)
        and f"<@{w.alice.id}>" in (e.content or "") and e.channel_id == channel.id,
        timeout=60,
    )  # fmt: skip
    (attachment,) = done.attachments
    name: str = attachment.filename
    return name


async def test_results_arrive_as_spoilers_where_the_moderators_say(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        late = w.fake.add_text_channel(w.guild, "after-dark", nsfw=True)
        plain = w.fake.add_text_channel(w.guild, "plain")
        assert (await file_of(w, late)).startswith("animation-")  # age-restricted, but not asked yet
        assert (
            "arrive as spoilers"
            in (await command(w, "animate-channels spoiler", channel=w.channel, on=True)).content
        )
        await command(w, "animate-channels age-restricted", spoiler=True)
        assert (await file_of(w, w.channel)).startswith("SPOILER_animation-")
        assert (await file_of(w, late)).startswith("SPOILER_animation-")
        assert (await file_of(w, plain)).startswith("animation-")
        await command(w, "animate-channels spoiler", channel=w.channel, on=False)
        assert (await file_of(w, w.channel)).startswith("animation-")
        assert "**animate-channels spoiler**" in (await command(w, "quota audit")).content
