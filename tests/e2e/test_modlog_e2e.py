"""The mod log through the Discord fake: a refused prompt, a moderator's deletion and a top-up
reach the channel the moderators chose, as embeds; they stay in the audit too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.e2e_world import world
from tests.e2e.test_quota_e2e import command
from tests.e2e.test_results_e2e import click, result_of

pytestmark = pytest.mark.timeout(240)


def posts(w: Any, channel: Any) -> list[dict[str, Any]]:
    return [
        e.embeds[0] for e in w.fake.events if e.kind == "create" and e.channel_id == channel.id and e.embeds
    ]


async def test_refused_prompts_deletions_and_changes_reach_the_mod_log(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        modlog = w.fake.add_text_channel(w.guild, "mod-log")
        assert f"<#{modlog.id}>" in (await command(w, "modlog channel", channel=modlog)).content
        await command(w, "filter add", kind="word", text="goblin")
        refused = await w.animate(w.alice, prompt="a goblin dances", version="gen-2")
        await refused.wait_acknowledged(timeout=3)
        result = await result_of(w, w.bob)
        (job,) = await w.bot.jobs()
        assert "Deleted" in await click(w, result, f"result:delete:{job.id}", w.mod)
        await command(w, "pool topup", amount=100)

        await w.fake.wait_for(lambda e: e.channel_id == modlog.id and bool(e.embeds)
                              and e.embeds[0]["title"] == "pool topup", timeout=15)  # fmt: skip
        embeds = posts(w, modlog)
        titles = [e["title"] for e in embeds]
        assert titles == ["modlog", "filter add", "prompt refused", "result delete", "pool topup"]
        refusal = embeds[2]
        fields = {f["name"]: f["value"] for f in refusal["fields"]}
        assert fields["By"] == f"<@{w.alice.id}>" and "rule #1" in fields["Detail"]
        assert "a goblin dances" in fields["Detail"]
        audit = (await command(w, "quota audit")).content
        assert "**prompt refused**" in audit and "**result delete**" in audit
