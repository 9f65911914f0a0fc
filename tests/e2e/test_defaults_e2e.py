"""Default options through the Discord fake: a channel's (moderators) and a member's own
(/settings), in the stated order: given, then the member's, then the channel's, then the bot's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.jobs import JobState
from testkit.e2e_world import world
from tests.e2e.test_quota_e2e import command, delivery

pytestmark = pytest.mark.timeout(240)


async def test_given_options_then_the_members_then_the_channels_then_the_bots(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        said = (
            await command(w, "animate-defaults set", aspect_ratio="9:16", version="gen-2", motion="low")
        ).content
        assert "9:16 · motion low · gen-2" in said
        refused = (await command(w, "animate-defaults set", user=w.alice, duration=10)).content
        assert "Only moderators" in refused
        mine = (await command(w, "settings set", user=w.alice, motion="high", version="gen-3")).content
        assert "motion high · gen-3" in mine
        shown = (await command(w, "settings show", user=w.alice)).content
        assert "then your /settings, then the channel's defaults" in shown

        alice = await w.animate(w.alice, duration=10)  # only the duration given
        await alice.wait_acknowledged(timeout=3)
        await delivery(w, w.alice, 1)
        bob = await w.animate(w.bob)  # nothing given, no /settings of his own
        await bob.wait_acknowledged(timeout=3)
        await delivery(w, w.bob, 1)
        jobs = await w.bot.wait_jobs(
            lambda js: len(js) == 2 and all(j.state is JobState.DELIVERED for j in js)
        )
        options = {j.user_id: j.options for j in jobs}
        a, b = options[w.alice.id], options[w.bob.id]
        assert (a.duration, a.aspect_ratio, a.motion, a.version) == (10, "9:16", "high", "gen-3")
        assert (b.duration, b.aspect_ratio, b.motion, b.version) == (5, "9:16", "low", "gen-2")

        assert "cleared" in (await command(w, "settings clear", user=w.alice)).content
        assert "cleared" in (await command(w, "animate-defaults clear")).content
        assert "**animate-defaults**" in (await command(w, "quota audit")).content
