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


async def test_a_report_reaches_the_mod_log_once_and_moderators_act_from_there(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        modlog = w.fake.add_text_channel(w.guild, "mod-log")
        await command(w, "modlog channel", channel=modlog)
        result = await result_of(w, w.alice)
        (job,) = await w.bot.jobs()
        assert "Reported" in await click(w, result, f"result:report:{job.id}", w.bob)
        assert "already" in await click(w, result, f"result:report:{job.id}", w.bob)
        assert "your own result" in await click(w, result, f"result:report:{job.id}", w.alice)

        report = await w.fake.wait_for(lambda e: e.channel_id == modlog.id and bool(e.embeds)
                                       and e.embeds[0]["title"] == "result report", timeout=15)  # fmt: skip
        fields = {f["name"]: f["value"] for f in report.embeds[0]["fields"]}
        assert fields["By"] == f"<@{w.bob.id}>" and "the sea moves" in fields["Detail"]
        assert f"/{result.message.id}" in fields["Detail"]  # a link to the result
        assert [c["custom_id"] for row in report.components for c in row["components"]] == [
            f"report:delete:{job.id}", f"report:block:{job.id}"
        ]  # fmt: skip
        assert "Only moderators" in await click(w, report, f"report:block:{job.id}", w.bob)
        assert "Deleted" in await click(w, report, f"report:delete:{job.id}", w.mod)
        assert result.message.deleted
        assert "is blocked" in await click(w, report, f"report:block:{job.id}", w.mod)
        again = await w.animate(w.alice, version="gen-2")
        await again.wait_acknowledged(timeout=3)
        refused = await w.fake.wait_for(lambda e: e.interaction_id == again.id and e.ephemeral, timeout=15)
        assert "blocked" in refused.content
