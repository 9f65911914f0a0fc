"""The fake, driven by small discord.py clients written here (never the project's bot)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from testkit.fake_discord import (
    FakeConfig,
    FakeDiscord,
    GatewaySession,
    MiB,
    NoBotConnected,
    WaitTimeout,
)

from .conftest import TOKEN, make_bot, png_bytes, running


def world(fake: FakeDiscord, **channel_kwargs: bool):  # type: ignore[no-untyped-def]
    guild = fake.add_guild("Test", filesize_limit=10 * MiB)
    chan = fake.add_text_channel(guild, "general", **channel_kwargs)
    alice = fake.add_user("alice")
    fake.add_member(guild, alice)
    return guild, chan, alice


def sync_on_setup(bot: discord.Client, tree: app_commands.CommandTree) -> None:
    async def setup_hook() -> None:
        await tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]


# (1) READY / GUILD_CREATE accepted, sync, defer, follow-up with a file -----------------------------


async def test_slash_command_defer_then_followup_with_file(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    bot = make_bot()
    seen: dict[str, object] = {}

    @bot.tree.command(name="animate", description="Animate an image")
    @app_commands.describe(prompt="What should move", image="The picture")
    async def animate(
        interaction: discord.Interaction, prompt: str, image: discord.Attachment, duration: int = 5
    ) -> None:
        await interaction.response.defer(thinking=True)
        data = await image.read()
        seen.update(
            limit=interaction.filesize_limit,
            app_perms=interaction.app_permissions,
            guild=interaction.guild,
            channel=interaction.channel,
            user=interaction.user,
            image=(image.filename, image.content_type, image.width, image.height, data),
        )
        await interaction.followup.send(
            content=f"{prompt} for {duration}s", file=discord.File(io.BytesIO(b"MP4" * 1000), "cat video.mp4")
        )

    sync_on_setup(bot, bot.tree)
    async with running(bot, fake):
        # READY + GUILD_CREATE were parsed into discord.py's cache.
        dguild = bot.get_guild(guild.id)
        assert dguild is not None and dguild.name == "Test"
        assert bot.get_channel(chan.id) is not None
        assert dguild.me is not None and dguild.me.id == fake.bot_user_id
        assert bot.user is not None and bot.user.id == fake.bot_user_id
        assert bot.application_id == fake.application_id
        assert dguild.filesize_limit == 10 * MiB
        # The tree sync reached the fake and was stored with ids.
        [cmd] = fake.commands()
        assert cmd["name"] == "animate" and cmd["id"]
        assert [o["name"] for o in cmd["options"]] == ["prompt", "image", "duration"]

        img = png_bytes((8, 6))
        it = await fake.invoke_slash(
            "animate",
            user=alice,
            guild=guild,
            channel=chan,
            options={"prompt": "cat", "duration": 3},
            attachments={"image": (img, "cat.png", "image/png")},
            attachment_size_limit=10 * MiB,
        )
        # option types came from the synced command (int 4, attachment 11)
        assert [(o["name"], o["type"]) for o in it.payload["data"]["options"]] == [
            ("prompt", 3),
            ("duration", 4),
            ("image", 11),
        ]
        cb = await it.wait_acknowledged(timeout=3)
        assert cb.type == 5 and cb.accepted
        assert it.ack_latency is not None and it.ack_latency < 3
        [ev] = await it.wait_for_messages(n=1, timeout=10)

    assert ev.route == "followup" and ev.kind == "create"
    assert ev.content == "cat for 3s"
    [att] = ev.attachments
    assert att.filename == "cat_video.mp4" and att["size"] == 3000 and att.data == b"MP4" * 1000
    assert att.content_type == "video/mp4"
    # the first follow-up after a defer fills the "thinking" message (same id as @original)
    assert ev.message.id == it.original_message_id and not ev.message.loading
    assert seen["limit"] == 10 * MiB
    assert seen["image"] == ("cat.png", "image/png", 8, 6, img)
    assert isinstance(seen["channel"], discord.TextChannel)
    assert isinstance(seen["user"], discord.Member) and seen["user"].id == alice.id  # type: ignore[attr-defined]
    perms = seen["app_perms"]
    assert isinstance(perms, discord.Permissions) and perms.send_messages and perms.attach_files
    assert fake.channel_messages(chan) == [ev.message]
    assert not fake.unknown_requests
    methods = [(r.method, r.route) for r in fake.requests]
    assert ("POST", "POST /interactions/{interaction_id}/{token}/callback") in methods


# (2) late acknowledgement -> 10062 -----------------------------------------------------------------


async def test_late_acknowledgement_gets_unknown_interaction(point_discord_py) -> None:  # type: ignore[no-untyped-def]
    async with FakeDiscord(FakeConfig(token=TOKEN, time_scale=0.05)) as fake:  # ack window 0.15 s
        point_discord_py(fake)
        guild, chan, alice = world(fake)
        bot = make_bot()
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        @bot.tree.command(name="slow", description="Acknowledges too late")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.4)
            try:
                await interaction.response.defer()
            except discord.HTTPException as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        sync_on_setup(bot, bot.tree)
        async with running(bot, fake):
            it = await fake.invoke_slash("slow", user=alice, guild=guild, channel=chan)
            exc = await asyncio.wait_for(outcome, 5)
            with pytest.raises(WaitTimeout, match="10062"):
                await it.wait_acknowledged(timeout=0.2)
        assert isinstance(exc, discord.NotFound) and exc.code == 10062 and exc.status == 404
        assert not it.acknowledged
        [attempt] = it.callbacks
        assert attempt.type == 5 and attempt.code == 10062 and attempt.latency > 0.15


# (3) follow-up after the token expired -> 401 / 50027 ----------------------------------------------


async def test_followup_after_token_expiry(point_discord_py) -> None:  # type: ignore[no-untyped-def]
    async with FakeDiscord(FakeConfig(token=TOKEN, token_lifetime=0.5)) as fake:
        point_discord_py(fake)
        guild, chan, alice = world(fake)
        bot = make_bot()
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        @bot.tree.command(name="long", description="Takes longer than the token lives")
        async def long(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await asyncio.sleep(0.7)
            try:
                await interaction.followup.send("done")
            except discord.HTTPException as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        sync_on_setup(bot, bot.tree)
        async with running(bot, fake):
            it = await fake.invoke_slash("long", user=alice, guild=guild, channel=chan)
            await it.wait_acknowledged()
            exc = await asyncio.wait_for(outcome, 5)
        assert isinstance(exc, discord.HTTPException) and exc.status == 401 and exc.code == 50027
        assert it.messages == []
        assert [(r.status, r.code) for r in it.rejected_requests] == [(401, 50027)]


# (4) a file over attachment_size_limit -> 413 / 40005 ----------------------------------------------


async def test_file_over_interaction_limit(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    bot = make_bot()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    @bot.tree.command(name="big", description="Uploads too much")
    async def big(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        assert interaction.filesize_limit == 1000
        try:
            await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * 1001), "big.bin"))
        except discord.HTTPException as exc:
            outcome.set_result(exc)
            await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * 1000), "ok.bin"))
        else:
            outcome.set_result(None)

    sync_on_setup(bot, bot.tree)
    async with running(bot, fake):
        it = await fake.invoke_slash("big", user=alice, guild=guild, channel=chan, attachment_size_limit=1000)
        exc = await asyncio.wait_for(outcome, 5)
        [ev] = await it.wait_for_messages(1, timeout=5)
    assert isinstance(exc, discord.HTTPException) and exc.status == 413 and exc.code == 40005
    assert ev.attachments[0].size == 1000


# (5) channel posts: permissions, deleted channel, blocked DMs, channel size limit --------------------


async def test_channel_post_permissions_and_errors(fake: FakeDiscord) -> None:
    guild, muted, alice = world(fake, bot_can_send=False)
    no_files = fake.add_text_channel(guild, "no-files", bot_can_attach=False)
    gone = fake.add_text_channel(guild, "gone")
    ok = fake.add_text_channel(guild, "ok")
    shy = fake.add_user("shy", accepts_dms=False)
    fake.add_member(guild, shy)
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)

    def file(n: int = 10) -> discord.File:
        return discord.File(io.BytesIO(b"y" * n), "f.bin")

    async with running(client, fake):
        dguild = client.get_guild(guild.id)
        assert dguild is not None and dguild.me is not None
        # discord.py sees the same permissions the fake enforces (overwrites in GUILD_CREATE)
        dmuted = client.get_channel(muted.id)
        assert isinstance(dmuted, discord.TextChannel)
        assert not dmuted.permissions_for(dguild.me).send_messages
        assert not dmuted.permissions_for(dguild.me).attach_files
        with pytest.raises(discord.Forbidden) as e1:
            await dmuted.send("hello")
        assert e1.value.code == 50013

        dno_files = client.get_channel(no_files.id)
        assert isinstance(dno_files, discord.TextChannel)
        await dno_files.send("text is fine")
        with pytest.raises(discord.Forbidden) as e2:
            await dno_files.send("with a file", file=file())
        assert e2.value.code == 50013

        dgone = client.get_channel(gone.id)
        assert isinstance(dgone, discord.TextChannel)
        fake.delete_channel(gone)
        with pytest.raises(discord.NotFound) as e3:
            await dgone.send("anyone?")
        assert e3.value.code == 10003

        dok = client.get_channel(ok.id)
        assert isinstance(dok, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as e4:
            await dok.send(file=discord.File(io.BytesIO(b"z" * (10 * MiB + 1)), "huge.bin"))
        assert e4.value.status == 413 and e4.value.code == 40005
        with pytest.raises(discord.HTTPException) as e5:
            await dok.send("x" * 2001)
        assert e5.value.status == 400 and e5.value.code == 50035
        # sent on purpose: taken, so the harness does not fail the test for it
        assert [v.fields for v in fake.accept_violations()] == [["content"]]
        sent = await dok.send("posted", file=file(5))
        assert sent.attachments[0].size == 5
        # permission changes at run time reach discord.py via CHANNEL_UPDATE
        fake.set_bot_permissions(ok, send=False)
        await fake.wait_for_request("POST /channels/{id}/messages", status=200)
        with pytest.raises(discord.Forbidden):
            await dok.send("now muted")

        member = await dguild.fetch_member(shy.id)
        with pytest.raises(discord.Forbidden) as e6:
            await member.send("hi")
        assert e6.value.code == 50007
        alice_member = await dguild.fetch_member(alice.id)
        await alice_member.send("a DM", file=file(3))

    [dm] = fake.dm_messages(alice)
    assert dm.route == "dm_post" and dm.content == "a DM" and dm.attachments[0].data == b"yyy"
    assert [m.content for m in fake.channel_messages(ok)] == ["posted"]
    assert [m.content for m in fake.channel_messages(no_files)] == ["text is fine"]
    codes = [r.code for r in fake.requests if r.status >= 400]
    assert codes == [50013, 50013, 10003, 40005, 50035, 50013, 50007]


# (6) an interaction in a DM ---------------------------------------------------------------------------


async def test_dm_interaction(fake: FakeDiscord) -> None:
    _, _, alice = world(fake)
    bot = make_bot()
    seen: dict[str, object] = {}

    @bot.tree.command(name="ping", description="Ping")
    async def ping(interaction: discord.Interaction) -> None:
        seen.update(
            guild=interaction.guild,
            guild_id=interaction.guild_id,
            channel=interaction.channel,
            user=interaction.user,
            perms=interaction.app_permissions,
        )
        await interaction.response.send_message("pong", ephemeral=True)
        await interaction.user.send("also by DM")

    sync_on_setup(bot, bot.tree)
    async with running(bot, fake):
        it = await fake.invoke_slash("ping", user=alice, guild=None, channel=fake.dm_channel_for(alice))
        cb = await it.wait_acknowledged()
        assert cb.type == 4 and cb.ephemeral
        await fake.wait_for(lambda m: m.route == "dm_post", timeout=5)
    assert "guild_id" not in it.payload and "member" not in it.payload and it.payload["context"] == 1
    assert seen["guild"] is None and seen["guild_id"] is None
    assert isinstance(seen["channel"], discord.DMChannel)
    assert isinstance(seen["user"], discord.User) and seen["user"].id == alice.id  # type: ignore[attr-defined]
    response, dm = fake.dm_messages(alice)
    assert response.route == "interaction_response" and response.content == "pong" and response.ephemeral
    assert dm.route == "dm_post" and dm.content == "also by DM"


# (7) a button of a persistent view ---------------------------------------------------------------------


class RetryView(discord.ui.View):
    def __init__(self, clicked: asyncio.Future[int] | None = None) -> None:
        super().__init__(timeout=None)
        self.clicked = clicked

    @discord.ui.button(label="Retry", custom_id="job:retry", style=discord.ButtonStyle.primary)
    async def retry(self, interaction: discord.Interaction, button: discord.ui.Button[RetryView]) -> None:
        if self.clicked is not None and not self.clicked.done():
            self.clicked.set_result(interaction.user.id)
        await interaction.response.edit_message(content="retrying", view=None)


async def test_persistent_view_button_click(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    bob = fake.add_user("bob")
    fake.add_member(guild, bob)

    # A first bot process posts a panel with a button...
    first = make_bot()

    @first.tree.command(name="panel", description="Posts a panel")
    async def panel(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("job failed", view=RetryView())

    sync_on_setup(first, first.tree)
    async with running(first, fake):
        it = await fake.invoke_slash("panel", user=alice, guild=guild, channel=chan)
        [ev] = await it.wait_for_messages(1)
    assert ev.components[0]["components"][0]["custom_id"] == "job:retry"

    # ...and after a restart only the persistent view (matched by custom_id) can answer the click.
    second = make_bot()
    clicked: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def setup_hook() -> None:
        second.add_view(RetryView(clicked))

    second.setup_hook = setup_hook  # type: ignore[method-assign]
    async with running(second, fake, ready_count=2):
        with pytest.raises(ValueError, match="no component"):
            await fake.click_button(ev.message, "nope", user=bob)
        click = await fake.click_button(ev.message, "job:retry", user=bob)
        assert (await asyncio.wait_for(clicked, 5)) == bob.id
        cb = await click.wait_acknowledged()
        assert cb.type == 7
        [update] = await click.wait_for_messages(1)
    assert click.payload["data"] == {"custom_id": "job:retry", "component_type": 2, "id": 2}
    assert click.payload["message"]["id"] == str(ev.message.id)
    assert update.route == "interaction_update" and update.kind == "edit"
    assert update.message is ev.message and ev.message.content == "retrying" and ev.message.components == []
    assert [v.route for v in ev.message.versions] == ["deferred", "followup", "interaction_update"]


# (8) a bot disconnects, another connects and gets READY again -------------------------------------------


async def test_second_bot_after_disconnect(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    first = make_bot()
    async with running(first, fake):
        assert first.get_guild(guild.id) is not None
    await fake.wait_for_disconnect(timeout=5)

    second = make_bot()
    answered: list[int] = []

    @second.tree.command(name="hello", description="Hello")
    async def hello(interaction: discord.Interaction) -> None:
        answered.append(interaction.id)
        await interaction.response.send_message("hi")

    sync_on_setup(second, second.tree)
    async with running(second, fake, ready_count=2):
        assert second.get_guild(guild.id) is not None
        it = await fake.invoke_slash("hello", user=alice, guild=guild, channel=chan)
        await it.wait_for_messages(1)
    assert answered == [it.id]
    first_session, second_session = fake.sessions
    assert first_session.session_id != second_session.session_id
    assert fake.ready_count == 2


# extras: 429 handling, RESUME, validation, CDN expiry -----------------------------------------------------


async def test_injected_429_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    _, chan, _ = world(fake)
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    inj = fake.inject("POST /channels/{id}/messages", status=429, count=1, retry_after=0.1)
    async with running(client, fake):
        dchan = client.get_channel(chan.id)
        assert isinstance(dchan, discord.TextChannel)
        await dchan.send("eventually")
    assert inj.hits == 1 and inj.exhausted
    posts = [r for r in fake.requests if r.route == "POST /channels/{channel_id}/messages"]
    assert [(r.status, r.injected) for r in posts] == [(429, True), (200, False)]
    assert [m.content for m in fake.channel_messages(chan)] == ["eventually"]


async def test_gateway_resume_after_drop(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    bot = make_bot()

    @bot.tree.command(name="hello", description="Hello")
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hi")

    sync_on_setup(bot, bot.tree)
    async with running(bot, fake):
        await fake.close_gateway(4000)  # discord.py reconnects and RESUMEs
        await fake.wait_until(lambda: fake.sessions[0].resumes == 1 and fake.sessions[0].connected, 10)
        created = asyncio.ensure_future(bot.wait_for("guild_channel_create", timeout=5))
        fake.add_text_channel(guild, "new-after-resume")
        assert (await created).name == "new-after-resume"
        it = await fake.invoke_slash("hello", user=alice, guild=guild, channel=chan)
        await it.wait_for_messages(1)
        assert len(fake.sessions) == 1


async def test_invoke_validates_against_synced_command(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    bot = make_bot()

    @bot.tree.command(name="animate", description="Animate")
    @app_commands.choices(style=[app_commands.Choice(name="Calm", value="calm")])
    async def animate(
        interaction: discord.Interaction, style: str, seconds: app_commands.Range[int, 1, 10]
    ) -> None:
        await interaction.response.send_message(f"{style}/{seconds}")

    sync_on_setup(bot, bot.tree)
    async with running(bot, fake):
        with pytest.raises(ValueError, match="required"):
            await fake.invoke_slash("animate", user=alice, guild=guild, options={"style": "calm"})
        with pytest.raises(ValueError, match="choices"):
            await fake.invoke_slash(
                "animate", user=alice, guild=guild, options={"style": "wild", "seconds": 2}
            )
        with pytest.raises(ValueError, match="outside"):
            await fake.invoke_slash(
                "animate", user=alice, guild=guild, options={"style": "calm", "seconds": 11}
            )
        with pytest.raises(ValueError, match="not synced"):
            await fake.invoke_slash("nope", user=alice, guild=guild)
        it = await fake.invoke_slash(
            "animate", user=alice, guild=guild, options={"style": "calm", "seconds": 2}
        )
        [ev] = await it.wait_for_messages(1)
    assert ev.content == "calm/2" and ev.route == "interaction_response" and ev.channel_id == chan.id


async def test_attachment_url_expires(point_discord_py) -> None:  # type: ignore[no-untyped-def]
    async with FakeDiscord(FakeConfig(token=TOKEN, attachment_url_ttl=1.0)) as fake:
        point_discord_py(fake)
        guild, chan, alice = world(fake)
        bot = make_bot()
        results: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

        @bot.tree.command(name="read", description="Reads its attachment twice")
        async def read(interaction: discord.Interaction, image: discord.Attachment) -> None:
            await interaction.response.defer()
            await results.put(await image.read())
            await asyncio.sleep(1.1)
            try:
                await results.put(await image.read())
            except discord.HTTPException as exc:
                await results.put(exc)

        sync_on_setup(bot, bot.tree)
        async with running(bot, fake):
            await fake.invoke_slash(
                "read",
                user=alice,
                guild=guild,
                channel=chan,
                attachments={"image": (b"GIF89a-ish", "a.gif", "image/gif")},
            )
            first = await asyncio.wait_for(results.get(), 5)
            second = await asyncio.wait_for(results.get(), 5)
    assert first == b"GIF89a-ish"
    assert isinstance(second, discord.NotFound)


async def test_auto_sharded_bot_with_all_intents(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    guild, chan, _ = world(fake)
    # AutoShardedBot must find the gateway through GET /gateway/bot, not DEFAULT_GATEWAY.
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL("ws://127.0.0.1:9/none")
    )
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.all(), guild_ready_timeout=0.05)
    async with running(bot, fake):
        dguild = bot.get_guild(guild.id)
        assert dguild is not None and dguild.chunked and len(dguild.members) == 3
        dchan = bot.get_channel(chan.id)
        assert isinstance(dchan, discord.TextChannel)
        received = asyncio.ensure_future(bot.wait_for("message", timeout=5))
        sent = await dchan.send("hello")
        assert (await received).id == sent.id  # MESSAGE_CREATE reached discord.py
        assert bot.cached_messages[0].id == sent.id
    [session] = fake.sessions
    assert session.shard == (0, 1)
    assert ("GET", "GET /gateway/bot") in [(r.method, r.route) for r in fake.requests]


class PickView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.select(custom_id="pick", options=[discord.SelectOption(label=x, value=x) for x in ("a", "b")])
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select[PickView]) -> None:
        await interaction.response.defer()  # type 6 on a component
        await interaction.edit_original_response(content=f"picked {select.values}", view=None)


async def test_other_response_paths(fake: FakeDiscord) -> None:
    guild, chan, alice = world(fake)
    bot = make_bot()
    group = app_commands.Group(name="job", description="Jobs")

    @group.command(name="show", description="Shows a job")
    async def show(interaction: discord.Interaction, job_id: int) -> None:
        embed = discord.Embed(title=f"Job {job_id}", description="done")
        await interaction.response.send_message(
            embed=embed, file=discord.File(io.BytesIO(b"thumb"), "t.png"), view=PickView()
        )
        await interaction.edit_original_response(
            attachments=[discord.File(io.BytesIO(b"final"), "final.mp4")]
        )
        original = await interaction.original_response()
        assert original.attachments[0].filename == "final.mp4"

    bot.tree.add_command(group)
    sync_on_setup(bot, bot.tree)
    async with running(bot, fake):
        it = await fake.invoke_slash("job show", user=alice, guild=guild, channel=chan, options={"job_id": 7})
        created, edited = await it.wait_for_messages(2)
        pick = await fake.select(created.message, "pick", ["b"], user=alice)
        assert (await pick.wait_acknowledged()).type == 6
        [picked] = await pick.wait_for_messages(1)
    assert it.payload["data"]["options"] == [
        {"name": "show", "type": 1, "options": [{"name": "job_id", "type": 4, "value": 7}]}
    ]
    assert created.route == "interaction_response" and created.embeds[0]["title"] == "Job 7"
    assert [a.filename for a in created.attachments] == ["t.png"]
    assert edited.route == "original_edit" and [a.data for a in edited.attachments] == [b"final"]
    assert picked.route == "original_edit" and picked.content == "picked ['b']" and picked.components == []
    assert picked.message is created.message and created.message.edited


# (11) AutoShardedBot: shards from /gateway/bot, each guild and interaction on its own shard ----------


class PacedShardedBot(commands.AutoShardedBot):
    """An AutoShardedBot whose non-initial IDENTIFYs wait ``pause`` s instead of discord.py's 5 s
    (the fake's identify window is 5 s x time_scale)."""

    def __init__(self, pause: float, **kwargs: object) -> None:
        super().__init__(
            command_prefix="!",
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            **kwargs,  # type: ignore[arg-type]
        )
        self.pause = pause

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self.pause)


def sharded_world(fake: FakeDiscord):  # type: ignore[no-untyped-def]
    alice = fake.add_user("alice")
    guilds, chans = [], []
    for k in (0, 1):
        guild = fake.add_guild(f"Shard {k}", shard=k)
        chans.append(fake.add_text_channel(guild, "general"))
        fake.add_member(guild, alice)
        guilds.append(guild)
    return guilds, chans, alice


def where_command(bot: commands.AutoShardedBot, seen: list[tuple[int, int | None]]) -> None:
    @bot.tree.command(name="where", description="Which shard has this guild")
    async def where(interaction: discord.Interaction) -> None:
        shard = interaction.guild.shard_id if interaction.guild else None
        seen.append((interaction.id, shard))
        await interaction.response.send_message(f"shard {shard}")


async def test_auto_sharded_bot_gets_its_shard_count_and_guilds_per_shard(
    point_discord_py, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # window 5 s x 0.01 = 50 ms; the bot's second shard waits 0.5 s before identifying
    async with FakeDiscord(FakeConfig(token=TOKEN, shard_count=2, time_scale=0.01)) as fake:
        point_discord_py(fake)
        # the shard count and the gateway url must come from GET /gateway/bot
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL("ws://127.0.0.1:9/none")
        )
        (g0, g1), (_, c1), alice = sharded_world(fake)
        bot = PacedShardedBot(pause=0.5)
        seen: list[tuple[int, int | None]] = []
        where_command(bot, seen)
        async with running(bot, fake):
            s0, s1 = await fake.wait_for_all_shards_ready(timeout=10)
            assert (s0.shard, s1.shard) == ((0, 2), (1, 2))
            assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
            d0, d1 = bot.get_guild(g0.id), bot.get_guild(g1.id)
            assert d0 is not None and d0.shard_id == 0
            assert d1 is not None and d1.shard_id == 1
            # each shard's READY / GUILD_CREATE carried only its own guild
            assert [g["id"] for g in json_frames(s0, "GUILD_CREATE")] == [str(g0.id)]
            assert [g["id"] for g in json_frames(s1, "GUILD_CREATE")] == [str(g1.id)]

            it = await fake.invoke_slash("where", user=alice, guild=g1, channel=c1)
            [answer] = await it.wait_for_messages(1)
            assert answer.content == "shard 1"
            # it reached the client through shard 1's session, not shard 0's
            assert str(it.id) in [d["id"] for d in json_frames(s1, "INTERACTION_CREATE")]
            assert json_frames(s0, "INTERACTION_CREATE") == []
            dm = await fake.invoke_slash("where", user=alice)
            [dm_answer] = await dm.wait_for_messages(1)
            assert dm_answer.content == "shard None"
            assert [d["id"] for d in json_frames(s0, "INTERACTION_CREATE")] == [str(dm.id)]

            # a guild joined later arrives on its shard
            joined = asyncio.ensure_future(bot.wait_for("guild_join", timeout=5))
            late = fake.add_guild("Late", shard=1)
            assert (await joined).id == late.id and bot.get_guild(late.id).shard_id == 1  # type: ignore[union-attr]
        assert [i for i, _ in seen] == [it.id, dm.id] and [s for _, s in seen] == [1, None]
        assert fake.identify_violations == []  # the bot's pacing kept to max_concurrency 1
        assert fake.session_start_limit["remaining"] == 998
        assert ("GET", "GET /gateway/bot") in [(r.method, r.route) for r in fake.requests]


def json_frames(session: GatewaySession, event: str) -> list[dict[str, Any]]:
    return [json.loads(f.text)["d"] for f in session.frames if f.event == event]


async def test_one_process_of_two_sees_only_its_shard(point_discord_py) -> None:  # type: ignore[no-untyped-def]
    async with FakeDiscord(FakeConfig(token=TOKEN, shard_count=2, time_scale=0.01)) as fake:
        point_discord_py(fake)  # explicit shard_count: discord.py uses DEFAULT_GATEWAY
        (g0, g1), (c0, c1), alice = sharded_world(fake)
        bot = PacedShardedBot(pause=0.5, shard_ids=[1], shard_count=2)
        seen: list[tuple[int, int | None]] = []
        where_command(bot, seen)
        async with running(bot, fake):
            [session] = await fake.wait_for_all_shards_ready(2, timeout=10, shard_ids=[1])
            assert session.shard == (1, 2)
            assert [g.id for g in bot.guilds] == [g1.id] and bot.get_guild(g0.id) is None
            it = await fake.invoke_slash("where", user=alice, guild=g1, channel=c1)
            assert (await it.wait_for_messages(1))[0].content == "shard 1"
            # shard 0 (its guilds and the DMs) belongs to the other process, which is not running
            with pytest.raises(NoBotConnected):
                await fake.invoke_slash("where", user=alice, guild=g0, channel=c0)
            with pytest.raises(NoBotConnected):
                await fake.invoke_slash("where", user=alice)
            with pytest.raises(WaitTimeout):
                await fake.wait_for_all_shards_ready(2, timeout=0.2)
        assert [s for _, s in seen] == [1]
        assert not any(r.route == "GET /gateway/bot" for r in fake.requests)


@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_two_processes_identify_at_once(point_discord_py, max_concurrency: int) -> None:  # type: ignore[no-untyped-def]
    # window 5 s x 0.2 = 1 s; both processes start together, as two containers would
    config = FakeConfig(token=TOKEN, shard_count=2, max_concurrency=max_concurrency, time_scale=0.2)
    async with FakeDiscord(config) as fake:
        point_discord_py(fake)
        (g0, g1), _, _ = sharded_world(fake)
        bots = [PacedShardedBot(pause=1.2, shard_ids=[k], shard_count=2) for k in (0, 1)]
        tasks = [asyncio.create_task(b.start(TOKEN)) for b in bots]
        try:
            await fake.wait_for_all_shards_ready(timeout=10)
            await asyncio.wait_for(asyncio.gather(*(b.wait_until_ready() for b in bots)), 10)
            assert [[g.id for g in b.guilds] for b in bots] == [[g0.id], [g1.id]]
        finally:
            for b in bots:
                await b.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        violations = fake.identify_violations
        if max_concurrency == 2:
            assert violations == []  # shards 0 and 1 are in buckets 0 and 1
        else:
            # both in bucket 0: one of them got op 9 INVALID_SESSION, discord.py identified again
            [violation] = violations
            assert violation.kind == "max_concurrency" and violation.rate_limit_key == 0
            assert len(fake.sessions) == 2
