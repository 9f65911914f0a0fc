"""The user-installed app through the Discord fake: /animate and "Animate this image" in a server
the bot is not in, by a member who installed the app for themselves. The answer goes through the
interaction's token while it lives, then by DM, never to the channel (the bot cannot post there),
and the job is paid like a DM: never by that server's pool, even one the bot knows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.jobs import Job, JobState
from bot.media.video import probe
from bot.store import Store
from testkit.books import ledger_sum
from testkit.e2e_world import PNG, World, world
from tests.e2e.test_bot_e2e import final_message, video_of

pytestmark = pytest.mark.timeout(240)

POOL = 500  # credits a pool row holds for the away server (the bot's earlier stay there)


@dataclass
class Away:
    """A server the bot is not in, where alice (who installed the app) and bob are members."""

    w: World
    guild: Any
    channel: Any

    async def animate(self, user: Any = None, **options: Any) -> Any:
        return await self.w.fake.invoke_slash(
            "animate", user=user or self.w.alice, guild=self.guild, channel=self.channel,
            options={"prompt": "the sea moves", "version": "gen-2"} | options,
            attachments={"image": (PNG, "pic.png", "image/png")},
        )  # fmt: skip


@contextlib.asynccontextmanager
async def away_world(tmp_path: Path, **config: Any) -> AsyncIterator[Away]:
    async with world(tmp_path, **config) as w:
        code, out = await w.bot.run_command("sync")  # the published contexts and installs
        assert code == 0, out
        guild = w.fake.add_guild("Elsewhere", with_bot=False)
        channel = w.fake.add_text_channel(guild, "chat")
        for user in (w.alice, w.bob, w.mod):
            w.fake.add_member(guild, user)
        w.fake.install_app(w.alice)
        # The bot knows a pool for that server (as after an earlier stay): it must stay untouched.
        store = await Store.open(w.bot.db)
        try:
            await store.ensure_guild(guild.id, POOL)
        finally:
            await store.close()
        yield Away(w, guild, channel)


async def books(w: World, guild_id: int) -> tuple[int, int, list[str]]:
    store = await Store.open(w.bot.db)
    try:
        guild = await store.get_guild(guild_id)
        assert guild is not None
        return (
            guild.balance,
            await ledger_sum(store, guild_id),
            [r.kind for r in await store.ledger_rows(guild_id)],
        )
    finally:
        await store.close()


def user_installed(job: Job, away: Away) -> bool:
    return job.guild_id is None and bool(job.user_install) and job.asked_in_guild_id == away.guild.id


def untouched_channel(away: Away) -> bool:
    """The bot never asked Discord for anything of the away server or its channel (its routes
    would answer 403): it used the interactions' tokens and DMs only."""
    ids = (f"/channels/{away.channel.id}", f"/guilds/{away.guild.id}")
    return not [r for r in away.w.fake.requests if any(i in r.path for i in ids)]


async def test_animate_where_the_bot_is_not_answers_through_the_token_and_charges_no_pool(
    tmp_path: Path,
) -> None:
    async with away_world(tmp_path) as away:
        w = away.w
        published = {c["name"]: c for c in w.fake.commands()}
        assert published["animate"]["integration_types"] == [0, 1]
        assert published["animate"]["contexts"] == [0, 1, 2]

        it = await away.animate()
        await it.wait_acknowledged(timeout=3)
        card = await w.fake.wait_for(lambda e: e.interaction_id == it.id and bool(e.embeds), timeout=15)
        where = {f["name"]: f["value"] for f in card.embeds[0]["fields"]}["Where the result comes"]
        assert "here while this message can still be updated" in where and "then by DM" in where
        done = await final_message(w, it)
        assert done.route == "followup" and done.channel_id == away.channel.id
        assert probe(video_of(done)).frames > 0
        (job,) = await w.bot.wait_jobs(lambda js: bool(js) and js[0].state is JobState.DELIVERED)
        assert user_installed(job, away) and job.outcome == "completed"
        assert job.plan == "pro" and job.plan_why == "bot default"  # the bot's default, as in DMs
        assert await books(w, away.guild.id) == (POOL, POOL, ["grant"])  # the server paid nothing
        assert untouched_channel(away)

        # The result's buttons work through their own interactions there: a report has no mod log
        # to go to; the requester's Delete removes it through the click's token.
        report = await w.fake.click_button(done.message, f"result:report:{job.id}", user=w.bob)
        (said,) = await report.wait_for_messages(n=1, timeout=15)
        assert said.ephemeral and "a server the bot is in" in said.content
        delete = await w.fake.click_button(done.message, f"result:delete:{job.id}", user=w.alice)
        (said,) = await delete.wait_for_messages(n=1, timeout=15)
        assert said.ephemeral and "Deleted" in said.content and done.message.deleted
        assert untouched_channel(away)


async def test_once_the_token_died_the_result_comes_by_dm(tmp_path: Path) -> None:
    # The fake's tokens live 2 s; the job takes ~4 s.
    async with away_world(tmp_path, emu={"processing_seconds": 200}, fake={"token_lifetime": 2.0}) as away:
        w = away.w
        it = await away.animate()
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert it.token_expired and done.route == "dm_post"
        assert done.channel_id == w.fake.dm_channel_for(w.alice).id and probe(video_of(done)).frames > 0
        (job,) = await w.bot.wait_jobs(lambda js: bool(js) and js[0].state is JobState.DELIVERED)
        assert user_installed(job, away) and job.delivery_note == "direct message: video"
        assert await books(w, away.guild.id) == (POOL, POOL, ["grant"])
        assert untouched_channel(away)


async def test_animate_this_image_where_the_bot_is_not(tmp_path: Path) -> None:
    async with away_world(tmp_path) as away:
        w = away.w
        post = w.fake.post_as(w.bob, away.channel, "look", files=[(PNG, "harbour.png", "image/png")])
        opened = await w.fake.invoke_message_command("Animate this image", post, user=w.alice)
        await opened.wait_acknowledged(timeout=3)
        assert opened.ack is not None and opened.ack.type == 9
        submitted = await w.fake.submit_modal(opened, {"prompt": "the harbour wakes", "version": "gen-2"})
        await submitted.wait_acknowledged(timeout=3)
        done = await final_message(w, submitted)
        assert done.route == "followup" and done.channel_id == away.channel.id and done.attachments
        (job,) = await w.bot.wait_jobs(lambda js: bool(js) and js[0].state is JobState.DELIVERED)
        assert user_installed(job, away) and job.options.prompt == "the harbour wakes"
        assert await books(w, away.guild.id) == (POOL, POOL, ["grant"])
        assert untouched_channel(away)


async def test_animate_in_a_group_dm_answers_through_the_token(tmp_path: Path) -> None:
    async with away_world(tmp_path) as away:
        w = away.w
        group = w.fake.add_group_dm(w.alice, w.bob, name="pals")
        it = await w.fake.invoke_slash(
            "animate", user=w.alice, channel=group, options={"prompt": "the sea moves", "version": "gen-2"},
            attachments={"image": (PNG, "pic.png", "image/png")},
        )  # fmt: skip
        await it.wait_acknowledged(timeout=3)
        done = await final_message(w, it)
        assert done.route == "followup" and done.channel_id == group.id and done.attachments
        (job,) = await w.bot.wait_jobs(lambda js: bool(js) and js[0].state is JobState.DELIVERED)
        assert job.guild_id is None and job.user_install and job.asked_in_guild_id is None
        assert not [r for r in w.fake.requests if f"/channels/{group.id}" in r.path]


async def test_moderator_commands_stay_with_servers_that_installed_the_bot(tmp_path: Path) -> None:
    async with away_world(tmp_path) as away:
        w = away.w
        published = {c["name"]: c for c in w.fake.commands()}
        for name in ("quota", "pool", "animate-channels", "filter", "modlog", "showcase", "animate-defaults"):
            assert published[name]["integration_types"] == [0] and published[name]["contexts"] == [0], name
        w.fake.install_app(w.mod)  # even a member who installed the app is not offered them there
        with pytest.raises(ValueError, match="not offered"):
            await w.fake.invoke_slash("pool show", user=w.mod, guild=away.guild, channel=away.channel)
        # A member's own /credits there shows their own plan and windows, not the server's pool.
        credits = await w.fake.invoke_slash("credits", user=w.alice, guild=away.guild, channel=away.channel)
        (said,) = await credits.wait_for_messages(n=1, timeout=15)
        assert said.ephemeral and "Counted outside servers only" in said.content
        assert "Server pool" not in said.content
        # bob did not install the app: nothing of it is offered to him there
        with pytest.raises(ValueError, match="not installed for the user"):
            await away.animate(w.bob)
        assert await w.bot.jobs() == []
