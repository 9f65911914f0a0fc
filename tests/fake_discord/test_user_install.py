"""User installs in the fake: a guild the bot is not in, a group DM, and who authorizes a command
(``authorizing_integration_owners``, ``context``), checked on the wire with a raw client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from testkit.fake_discord import FakeConfig, FakeDiscord, Perm
from tests.fake_discord.test_protocol import AUTH, TOKEN, identify

COMMANDS = [
    {"name": "animate", "description": "d", "type": 1, "integration_types": [0, 1], "contexts": [0, 1, 2]},
    {"name": "quota", "description": "d", "type": 1, "contexts": [0], "default_member_permissions": "32"},
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(FakeConfig(token=TOKEN)) as f:
        yield f


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_a_guild_without_the_bot_is_hidden_from_it_and_refuses_its_requests(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    home = fake.add_guild("Home")
    away = fake.add_guild("Away", with_bot=False)
    chan = fake.add_text_channel(away, "general")
    carol = fake.add_user("carol")
    fake.add_member(away, carol)
    gw = await identify(http, fake)
    ready = await gw.until("READY")
    assert ready["d"]["guilds"] == [{"id": str(home.id), "unavailable": True}]  # Away is not listed
    assert (await gw.until("GUILD_CREATE"))["d"]["id"] == str(home.id)
    await fake.wait_for_ready(timeout=2)
    assert fake.bot_user_id not in away.members and away.bot_role_id is None
    for path in (f"/guilds/{away.id}", f"/channels/{chan.id}", f"/channels/{chan.id}/messages"):
        async with http.get(fake.api_base + path, headers=AUTH) as r:
            assert r.status == 403 and (await r.json())["code"] == 50001, path
    async with http.post(
        f"{fake.api_base}/channels/{chan.id}/messages", headers=AUTH, json={"content": "x"}
    ) as r:
        assert r.status == 403 and (await r.json())["code"] == 50001
    await gw.ws.close()


async def test_only_a_user_install_reaches_a_guild_without_the_bot_and_components_keep_its_owner(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    home = fake.add_guild("Home")
    fake.add_text_channel(home, "lobby")
    away = fake.add_guild("Away", with_bot=False)
    chan = fake.add_text_channel(away, "general")
    carol, dave = fake.add_user("carol"), fake.add_user("dave")
    for user in (carol, dave):
        fake.add_member(away, user)
        fake.add_member(home, user)
    gw = await identify(http, fake)
    await fake.wait_for_ready(timeout=2)
    async with http.put(f"{fake.api_base}/applications/{fake.application_id}/commands", headers=AUTH,
                        json=COMMANDS) as r:  # fmt: skip
        assert r.status == 200
        published = {c["name"]: c for c in await r.json()}
    assert published["animate"]["integration_types"] == [0, 1] and published["animate"]["contexts"] == [
        0,
        1,
        2,
    ]
    assert published["quota"]["integration_types"] == [0] and published["quota"]["contexts"] == [0]

    with pytest.raises(ValueError, match="not installed for the user"):  # carol has not installed it
        await fake.invoke_slash("animate", user=carol, guild=away, channel=chan, options={})
    fake.install_app(carol)
    with pytest.raises(ValueError, match="not offered"):  # a guild-install-only command
        await fake.invoke_slash("quota", user=carol, guild=away, channel=chan, options={})
    it = await fake.invoke_slash("animate", user=carol, guild=away, channel=chan, options={})
    d = (await gw.until("INTERACTION_CREATE"))["d"]
    assert d["authorizing_integration_owners"] == {"1": str(carol.id)} and d["context"] == 0
    assert d["guild_id"] == str(away.id) and set(d["guild"]) == {"id", "locale", "features"}
    assert d["member"]["user"]["id"] == str(carol.id) and d["channel"]["id"] == str(chan.id)
    assert int(d["app_permissions"]) == Perm.APP_ELSEWHERE

    # The token is the way to answer there; a component on that answer carries carol's install,
    # whoever clicks it (dave has not installed the app).
    cb = f"{fake.api_base}/interactions/{it.id}/{it.token}/callback"
    button = {"type": 2, "style": 2, "label": "b", "custom_id": "b"}
    answer = {"content": "hi", "components": [{"type": 1, "components": [button]}]}
    async with http.post(cb, json={"type": 4, "data": answer}) as r:
        assert r.status == 204
    assert it.original_message is not None
    await fake.click_button(it.original_message, "b", user=dave)
    click = (await gw.until("INTERACTION_CREATE"))["d"]
    assert click["type"] == 3 and click["authorizing_integration_owners"] == {"1": str(carol.id)}

    # Where the bot is, both installs authorize a command that allows both.
    await fake.invoke_slash("animate", user=carol, guild=home, options={})
    both = (await gw.until("INTERACTION_CREATE"))["d"]
    assert both["authorizing_integration_owners"] == {"0": str(home.id), "1": str(carol.id)}
    await gw.ws.close()


async def test_a_group_dm_is_context_2_and_closed_to_the_bot(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    carol, dave = fake.add_user("carol"), fake.add_user("dave")
    group = fake.add_group_dm(carol, dave, name="pals")
    gw = await identify(http, fake)
    await fake.wait_for_ready(timeout=2)
    async with http.put(f"{fake.api_base}/applications/{fake.application_id}/commands", headers=AUTH,
                        json=COMMANDS) as r:  # fmt: skip
        assert r.status == 200
    fake.install_app(carol)
    with pytest.raises(ValueError, match="not offered"):
        await fake.invoke_slash("quota", user=carol, channel=group, options={})
    await fake.invoke_slash("animate", user=carol, channel=group, options={})
    d = (await gw.until("INTERACTION_CREATE"))["d"]
    assert d["context"] == 2 and d["authorizing_integration_owners"] == {"1": str(carol.id)}
    assert d["user"]["id"] == str(carol.id) and "member" not in d and d["channel"]["type"] == 3
    async with http.post(
        f"{fake.api_base}/channels/{group.id}/messages", headers=AUTH, json={"content": "x"}
    ) as r:
        assert r.status == 403 and (await r.json())["code"] == 50001
    await gw.ws.close()
