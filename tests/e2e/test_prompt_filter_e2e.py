"""The prompt filter through the Discord fake and the real bot: moderators add and test rules,
a blocked prompt is refused privately and starts, writes and charges nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.store import Store
from testkit.e2e_world import World, world
from tests.e2e.test_quota_e2e import command, delivery, refusal

pytestmark = pytest.mark.timeout(240)


async def pool(w: World) -> tuple[int | None, int]:
    """The server's balance (None before its first job) and its ledger's row count."""
    store = await Store.open(w.bot.db)
    try:
        guild = await store.get_guild(w.guild.id)
        return (None if guild is None else guild.balance), len(await store.ledger_rows(w.guild.id, 100))
    finally:
        await store.close()


async def test_blocked_prompts_are_refused_privately_and_change_nothing(tmp_path: Path) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# the owner's own\ntroll\n", encoding="utf-8")
    async with world(tmp_path, extra={"PROMPT_BLOCKLIST_FILE": str(blocklist)}) as w:
        added = (await command(w, "filter add", kind="word", text="goblin")).content
        assert "Rule #1 added" in added
        bad = (await command(w, "filter add", kind="pattern", text="(?<=x)y")).content
        assert "Not added" in bad and "does not compile" in bad
        assert "#1 word: `goblin`" in (await command(w, "filter list")).content
        assert "rule #1" in (await command(w, "filter test", prompt="a g o b l i n")).content
        refused = (await command(w, "filter add", user=w.alice, kind="word", text="sea")).content
        assert "Only moderators" in refused

        ok = await w.animate(w.bob, prompt="the sea moves", version="gen-2")
        await ok.wait_acknowledged(timeout=3)
        await delivery(w, w.bob, 1)
        books = await pool(w)
        for prompt, rule in [
            ("A GÓBLÏN dances", "this server's rule #1"),
            ("a ｔｒｏｌｌ waves", "the bot's own list"),
        ]:
            text = await refusal(w, await w.animate(w.alice, prompt=prompt, version="gen-2"))
            assert rule in text and "Nothing was started or charged" in text
            assert "goblin" not in text.lower() and "troll" not in text.lower()  # the rule, never its text
        assert len(await w.bot.jobs()) == 1  # bob's
        assert w.api_stats()["jobs_created"] == 1
        assert await pool(w) == books
        assert "filter add" in (await command(w, "quota audit")).content


async def test_a_bad_line_in_the_owners_list_stops_the_start_with_its_number(tmp_path: Path) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("troll\nre:(unclosed\n", encoding="utf-8")
    with pytest.raises(Exception):  # noqa: B017 - the world cannot start: the bot exits
        async with world(tmp_path, extra={"PROMPT_BLOCKLIST_FILE": str(blocklist)}):
            pass
    log = (tmp_path / "bot.log").read_text()
    assert "line 2: the pattern does not compile" in log
