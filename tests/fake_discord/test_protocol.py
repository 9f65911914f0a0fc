"""Wire-level checks of the fake with a raw aiohttp client (what discord.py hides or guards locally)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from testkit.fake_discord import FakeConfig, FakeDiscord, GatewaySession, MiB

TOKEN = "raw-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(FakeConfig(token=TOKEN)) as f:
        yield f


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class RawGateway:
    """A minimal gateway client: enough to IDENTIFY and read dispatches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        return json.loads(msg.data)  # type: ignore[no-any-return]

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": d}))

    async def until(self, event: str) -> dict[str, Any]:
        while True:
            payload = await self.recv()
            if payload.get("t") == event:
                return payload


async def identify(http: aiohttp.ClientSession, fake: FakeDiscord, intents: int = 0) -> RawGateway:
    gw = RawGateway(await http.ws_connect(fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream"))
    hello = await gw.recv()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
    await gw.send(2, {"token": TOKEN, "intents": intents, "properties": {}})
    return gw


def form(payload: dict[str, Any], *files: tuple[str, bytes]) -> aiohttp.FormData:
    data = aiohttp.FormData(quote_fields=False)
    data.add_field("payload_json", json.dumps(payload))
    for i, (name, content) in enumerate(files):
        data.add_field(f"files[{i}]", content, filename=name, content_type="application/octet-stream")
    return data


async def test_headers_auth_and_unknown_routes(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{fake.api_base}/users/@me") as r:
        assert r.status == 401
        assert r.headers["Content-Type"] == "application/json"
        assert await r.json() == {"message": "401: Unauthorized", "code": 0}
    async with http.get(f"{fake.api_base}/users/@me", headers={"Authorization": "Bot wrong"}) as r:
        assert r.status == 401
    async with http.get(f"{fake.api_base}/users/@me", headers=AUTH) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/json"  # exactly: no charset
        for h in (
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "X-RateLimit-Reset-After",
            "X-RateLimit-Bucket",
        ):
            assert h in r.headers
        me = await r.json()
        assert me["id"] == str(fake.bot_user_id) and me["bot"] is True
    async with http.get(f"{fake.api_base}/oauth2/applications/@me", headers=AUTH) as r:
        app = await r.json()
        for key in (
            "id",
            "name",
            "description",
            "icon",
            "bot_public",
            "bot_require_code_grant",
            "owner",
            "verify_key",
            "flags",
        ):
            assert key in app
    async with http.get(f"{fake.api_base}/gateway/bot", headers=AUTH) as r:
        gw = await r.json()
        assert gw["url"] == fake.gateway_url and gw["shards"] == 1 and "session_start_limit" in gw
    async with http.get(f"{fake.api_base}/stickers/123", headers=AUTH) as r:
        assert r.status == 404 and (await r.json())["code"] == 0
    async with http.delete(f"{fake.api_base}/users/@me", headers=AUTH) as r:
        assert r.status == 405
    assert [(u.method, u.path) for u in fake.unknown_requests] == [
        ("GET", "/api/v10/stickers/123"),
        ("DELETE", "/api/v10/users/@me"),
    ]
    method, path, status, _time = fake.requests[0]
    assert (method, path, status) == ("GET", "/api/v10/users/@me", 401)


async def test_injected_429_wire_format(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.inject("GET /users/{id}", status=429, retry_after=1.5, count=1)
    async with http.get(f"{fake.api_base}/users/@me", headers=AUTH) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "2"
        assert r.headers["Via"]  # discord.py only retries 429s that carry Via
        assert await r.json() == {
            "message": "You are being rate limited.",
            "retry_after": 1.5,
            "global": False,
        }
    async with http.get(f"{fake.api_base}/users/@me", headers=AUTH) as r:
        assert r.status == 200


async def test_raw_interaction_lifecycle(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    guild = fake.add_guild("G", filesize_limit=50 * MiB)
    chan = fake.add_text_channel(guild, "general")
    carol = fake.add_user("carol")
    fake.add_member(guild, carol, manage_guild=True)
    gw = await identify(http, fake, intents=(1 << 0) | (1 << 9))
    ready = await gw.until("READY")
    assert ready["s"] == 1 and ready["d"]["guilds"] == [{"id": str(guild.id), "unavailable": True}]
    assert ready["d"]["application"]["id"] == str(fake.application_id)
    created = await gw.until("GUILD_CREATE")
    gdata = created["d"]
    assert gdata["premium_tier"] == 2 and gdata["member_count"] == 3
    assert all("flags" in m for m in gdata["members"])
    assert {m["user"]["id"] for m in gdata["members"]} == {str(fake.bot_user_id)}  # no GUILD_MEMBERS intent
    await fake.wait_for_ready(timeout=2)
    await gw.send(1, 2)
    assert (await gw.recv())["op"] == 11

    it = await fake.invoke_slash(
        "animate",
        user=carol,
        guild=guild,
        channel=chan,
        options={"prompt": "p", "loop": True, "strength": 0.5},
        attachments={"image": (b"\x89PNG fake", "my pic.png", "image/png")},
    )
    event = await gw.until("INTERACTION_CREATE")
    d = event["d"]
    assert d["id"] == str(it.id) and d["token"] == it.token and d["type"] == 2 and d["version"] == 1
    assert d["attachment_size_limit"] == 50 * MiB and d["context"] == 0
    assert int(d["member"]["permissions"]) & (1 << 5)  # manage_guild via a role
    assert d["member"]["flags"] == 0 and d["channel"]["type"] == 0
    assert [(o["name"], o["type"]) for o in d["data"]["options"]] == [
        ("prompt", 3),
        ("loop", 5),
        ("strength", 10),
        ("image", 11),
    ]
    [att] = d["data"]["resolved"]["attachments"].values()
    assert att["filename"] == "my_pic.png" and att["content_type"] == "image/png"
    async with http.get(att["url"]) as r:
        assert r.status == 200 and await r.read() == b"\x89PNG fake"
    async with http.get(att["url"].replace("hm=", "hm=0")) as r:
        assert r.status == 404
    fake.inject("GET /attachments/*", status=503, count=1)
    async with http.get(att["url"]) as r:
        assert r.status == 503
    async with http.get(att["url"]) as r:
        assert r.status == 200

    cb_url = f"{fake.api_base}/interactions/{it.id}/{it.token}/callback?with_response=true"
    async with http.post(cb_url, json={"type": 5, "data": {"flags": 64}}) as r:
        assert r.status == 200
        body = await r.json()
        assert body["interaction"]["response_message_loading"] is True
        assert body["interaction"]["response_message_ephemeral"] is True
    async with http.post(cb_url, json={"type": 4, "data": {"content": "again"}}) as r:
        assert r.status == 400 and (await r.json())["code"] == 40060

    hook = f"{fake.api_base}/webhooks/{fake.application_id}/{it.token}"
    async with http.post(
        hook + "?wait=true",
        data=form(
            {"content": "result", "attachments": [{"id": 0, "filename": "out.mp4"}]}, ("out.mp4", b"V" * 10)
        ),
    ) as r:
        assert r.status == 200
        msg = await r.json()
    assert msg["id"] == str(it.original_message_id) and msg["flags"] == 64  # fills the ephemeral defer
    assert msg["webhook_id"] == str(fake.application_id) and msg["attachments"][0]["size"] == 10
    async with http.post(hook, json={"content": "second"}) as r:
        assert r.status == 204  # no ?wait
    async with http.post(hook, json={"content": ""}) as r:
        assert r.status == 400 and (await r.json())["code"] == 50006
    async with http.patch(
        hook + "/messages/@original",
        data=form(
            {"content": "edited", "attachments": [{"id": 0, "filename": "new.gif"}]}, ("new.gif", b"G" * 4)
        ),
    ) as r:
        assert r.status == 200
        edited = await r.json()
    assert [a["filename"] for a in edited["attachments"]] == ["new.gif"]  # old file dropped: not listed
    second = it.messages[1].message
    async with http.patch(f"{hook}/messages/{second.id}", json={"embeds": [{"title": "t" * 257}]}) as r:
        assert r.status == 400 and (await r.json())["code"] == 50035
    assert [v.fields for v in fake.accept_violations()] == [["embeds.0.title"]]  # sent on purpose
    async with http.delete(f"{hook}/messages/{second.id}") as r:
        assert r.status == 204
    async with http.post(hook, data=form({"content": "huge"}, ("big.bin", b"B" * (25 * MiB + 1)))) as r:
        assert r.status == 413 and (await r.json())["code"] == 40005

    kinds = [(e.kind, e.route) for e in it.events]
    assert kinds == [
        ("create", "followup"),
        ("create", "followup"),
        ("edit", "original_edit"),
        ("delete", "webhook_delete"),
    ]
    assert [v.route for v in it.original_message.versions] == ["deferred", "followup", "original_edit"]  # type: ignore[union-attr]
    # Ephemeral messages are not dispatched; the non-ephemeral follow-up is (GUILD_MESSAGES intent).
    created_msg = await gw.until("MESSAGE_CREATE")
    assert created_msg["d"]["content"] == "second" and created_msg["d"]["guild_id"] == str(guild.id)
    await gw.ws.close()


async def test_gateway_auth_resume_and_invalid_session(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    guild = fake.add_guild("G")
    # bad token -> 4004
    ws = await http.ws_connect(fake.gateway_url)
    await ws.receive_json()
    await ws.send_json({"op": 2, "d": {"token": "nope", "intents": 0, "properties": {}}})
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4004
    await ws.close()

    gw = await identify(http, fake)
    ready = await gw.until("READY")
    session_id = ready["d"]["session_id"]
    last = await gw.until("GUILD_CREATE")
    await fake.wait_for_ready(timeout=2)
    await gw.ws.close()
    await fake.wait_for_disconnect(timeout=2)
    chan = fake.add_text_channel(guild, "while-away")  # buffered for the RESUME

    gw2 = RawGateway(await http.ws_connect(ready["d"]["resume_gateway_url"]))
    await gw2.recv()
    await gw2.send(6, {"token": TOKEN, "session_id": session_id, "seq": last["s"]})
    replayed = await gw2.recv()
    assert replayed["t"] == "CHANNEL_CREATE" and replayed["d"]["id"] == str(chan.id)
    assert (await gw2.recv())["t"] == "RESUMED"
    await gw2.ws.close()

    gw3 = RawGateway(await http.ws_connect(fake.gateway_url))
    await gw3.recv()
    await gw3.send(6, {"token": TOKEN, "session_id": "unknown", "seq": 1})
    assert (await gw3.recv()) == {"op": 9, "t": None, "s": None, "d": False}
    await gw3.ws.close()


# --- sharding and the session start limit ---------------------------------------------------------


async def gateway_bot(http: aiohttp.ClientSession, fake: FakeDiscord) -> dict[str, Any]:
    async with http.get(f"{fake.api_base}/gateway/bot", headers=AUTH) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def connect(http: aiohttp.ClientSession, fake: FakeDiscord) -> RawGateway:
    gw = RawGateway(await http.ws_connect(fake.gateway_url + "?v=10&encoding=json"))
    assert (await gw.recv())["op"] == 10
    return gw


async def identify_shard(
    http: aiohttp.ClientSession, fake: FakeDiscord, shard: Any, *, intents: int = 1
) -> RawGateway:
    gw = await connect(http, fake)
    d: dict[str, Any] = {"token": TOKEN, "intents": intents, "properties": {}}
    if shard is not None:
        d["shard"] = shard
    await gw.send(2, d)
    return gw


async def closed_with(gw: RawGateway) -> tuple[int | None, str]:
    msg = await gw.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return gw.ws.close_code, msg.extra or ""


async def until_id(gw: RawGateway, event: str, object_id: int) -> dict[str, Any]:
    """The next ``event`` dispatch whose ``d.id`` is ``object_id`` (skipping others)."""
    while True:
        payload = await gw.until(event)
        if payload["d"]["id"] == str(object_id):
            return payload


def dispatched(session: GatewaySession, event: str) -> list[dict[str, Any]]:
    """The ``d`` of every ``event`` frame the fake queued for ``session``."""
    return [json.loads(f.text)["d"] for f in session.frames if f.event == event]


async def test_gateway_bot_reports_shards_and_each_shard_gets_its_guilds(http: aiohttp.ClientSession) -> None:
    config = FakeConfig(
        token=TOKEN, shard_count=3, max_concurrency=3, session_start_total=10, time_scale=0.01
    )
    async with FakeDiscord(config) as fake:
        guilds = [fake.add_guild(f"G{k}", shard=k) for k in (0, 1, 2, 1)]
        assert [(g.id >> 22) % 3 for g in guilds] == [0, 1, 2, 1]
        assert [fake.shard_of(g) for g in guilds] == [0, 1, 2, 1]
        assert [g.id for g in guilds] == sorted({g.id for g in guilds})  # unique and increasing
        chan = fake.add_text_channel(guilds[1], "general")
        alice = fake.add_user("alice")
        fake.add_member(guilds[1], alice)

        before = await gateway_bot(http, fake)
        assert before["url"] == fake.gateway_url and before["shards"] == 3
        limit = before["session_start_limit"]
        assert set(limit) == {"total", "remaining", "reset_after", "max_concurrency"}
        assert all(isinstance(v, int) for v in limit.values())
        assert (limit["total"], limit["remaining"], limit["max_concurrency"]) == (10, 10, 3)

        # max_concurrency 3: the three buckets (shard_id % 3) may identify at once
        gws = [await identify_shard(http, fake, [k, 3]) for k in range(3)]
        readies = [await gw.until("READY") for gw in gws]
        assert [r["d"]["shard"] for r in readies] == [[0, 3], [1, 3], [2, 3]]
        assert [{g["id"] for g in r["d"]["guilds"]} for r in readies] == [
            {str(guilds[0].id)},
            {str(guilds[1].id), str(guilds[3].id)},
            {str(guilds[2].id)},
        ]
        sessions = await fake.wait_for_all_shards_ready(timeout=5)
        assert [s.shard for s in sessions] == [(0, 3), (1, 3), (2, 3)]
        assert [[g["id"] for g in dispatched(s, "GUILD_CREATE")] for s in sessions] == [
            [str(guilds[0].id)],
            [str(guilds[1].id), str(guilds[3].id)],
            [str(guilds[2].id)],
        ]
        assert fake.identify_violations == []
        after = (await gateway_bot(http, fake))["session_start_limit"]
        assert after["remaining"] == 7 and after["reset_after"] <= limit["reset_after"]

        # guild events, interactions and new guilds go to the shard that covers the guild ...
        late = fake.add_guild("Late", shard=2)
        it = await fake.invoke_slash("hello", user=alice, guild=guilds[1], channel=chan)
        await until_id(gws[1], "INTERACTION_CREATE", it.id)
        await until_id(gws[2], "GUILD_CREATE", late.id)
        # ... and events without a guild (a DM interaction) to shard 0 only, as Discord does
        dm = await fake.invoke_slash("hello", user=alice)
        await until_id(gws[0], "INTERACTION_CREATE", dm.id)
        assert [[i["id"] for i in dispatched(s, "INTERACTION_CREATE")] for s in sessions] == [
            [str(dm.id)],
            [str(it.id)],
            [],
        ]
        assert [[g["id"] for g in dispatched(s, "GUILD_CREATE")][-1:] for s in sessions] == [
            [str(guilds[0].id)],
            [str(guilds[3].id)],
            [str(late.id)],
        ]
        fake.add_text_channel(guilds[1], "later")
        fake.add_role(guilds[2], "Pro")
        assert [len(dispatched(s, "CHANNEL_CREATE")) for s in sessions] == [0, 1, 0]
        assert [len(dispatched(s, "GUILD_ROLE_CREATE")) for s in sessions] == [0, 0, 1]
        for gw in gws:
            await gw.ws.close()


async def test_sharding_required_and_invalid_shards(http: aiohttp.ClientSession) -> None:
    config = FakeConfig(token=TOKEN, shard_count=2, require_sharding=True, max_concurrency=2, time_scale=0.01)
    async with FakeDiscord(config) as fake:
        assert await closed_with(await identify_shard(http, fake, None)) == (4011, "Sharding required.")
        assert await closed_with(await identify_shard(http, fake, [0, 1])) == (4011, "Sharding required.")
        for bad in ([2, 2], [-1, 2], [0, 0], "0,2", [0], [0, 2, 1], [0.5, 2]):
            assert await closed_with(await identify_shard(http, fake, bad)) == (4010, "Invalid shard."), bad
        # refused IDENTIFYs start no session and cost nothing
        assert fake.sessions == [] and fake.session_start_limit["remaining"] == 1000
        gw = await identify_shard(http, fake, [1, 2])
        assert (await gw.until("READY"))["d"]["shard"] == [1, 2]
        # more shards than recommended is allowed (Discord only routes by num_shards)
        gw4 = await identify_shard(http, fake, [0, 4])
        assert (await gw4.until("READY"))["d"]["shard"] == [0, 4]
        assert fake.session_start_limit["remaining"] == 998 and fake.identify_violations == []
        await gw.ws.close()
        await gw4.ws.close()


async def test_identify_rate_limit_per_bucket(http: aiohttp.ClientSession) -> None:
    # identify window 5 s x 0.2 = 1 s; max_concurrency 1: every shard is in bucket 0
    async with FakeDiscord(FakeConfig(token=TOKEN, shard_count=2, time_scale=0.2)) as fake:
        gw0 = await identify_shard(http, fake, [0, 2])
        await gw0.until("READY")
        gw1 = await identify_shard(http, fake, [1, 2])
        assert await gw1.recv() == {"op": 9, "t": None, "s": None, "d": False}
        [violation] = fake.identify_violations
        assert violation.kind == "max_concurrency" and violation.shard == (1, 2)
        assert violation.rate_limit_key == 0 and violation.previous_identify_at is not None
        assert fake.session_start_limit["remaining"] == 999  # the refused IDENTIFY started nothing
        assert len(fake.sessions) == 1
        # once the window has passed, the same shard may identify
        await asyncio.sleep(fake.config.scaled(fake.config.identify_window))
        await gw1.send(2, {"token": TOKEN, "intents": 1, "properties": {}, "shard": [1, 2]})
        assert (await gw1.until("READY"))["d"]["shard"] == [1, 2]
        assert len(fake.identify_violations) == 1
        await fake.wait_for_all_shards_ready(2, timeout=5)
        await gw0.ws.close()
        await gw1.ws.close()

    # max_concurrency 2: shards 0 and 1 (keys 0 and 1) may identify at once; shard 2 (key 0) not
    config = FakeConfig(token=TOKEN, shard_count=3, max_concurrency=2, time_scale=0.2)
    async with FakeDiscord(config) as fake:
        gws = [await identify_shard(http, fake, [k, 3]) for k in range(3)]
        assert [(await gw.until("READY"))["d"]["shard"] for gw in gws[:2]] == [[0, 3], [1, 3]]
        assert await gws[2].recv() == {"op": 9, "t": None, "s": None, "d": False}
        assert [(v.kind, v.shard, v.rate_limit_key) for v in fake.identify_violations] == [
            ("max_concurrency", (2, 3), 0)
        ]
        for gw in gws:
            await gw.ws.close()


async def test_session_start_limit_exhausted(http: aiohttp.ClientSession) -> None:
    config = FakeConfig(
        token=TOKEN,
        shard_count=2,
        max_concurrency=2,
        session_start_total=2,
        session_start_reset_after=200_000,  # 200 s x 0.01 = 2 s
        time_scale=0.01,
    )
    async with FakeDiscord(config) as fake:
        gws = [await identify_shard(http, fake, [k, 2]) for k in range(2)]
        for gw in gws:
            await gw.until("READY")
        limit = (await gateway_bot(http, fake))["session_start_limit"]
        assert (limit["total"], limit["remaining"]) == (2, 0) and 0 < limit["reset_after"] <= 2000
        # a RESUME is not a session start
        await gws[0].ws.close()
        await fake.wait_until(lambda: not fake.sessions[0].connected, 5, "shard 0 to disconnect")
        resumed = await connect(http, fake)
        await resumed.send(6, {"token": TOKEN, "session_id": fake.sessions[0].session_id, "seq": 1})
        await resumed.until("RESUMED")
        # remaining 0: Discord resets the token and ends the sessions; the fake closes 4004
        refused = await identify_shard(http, fake, [0, 2])
        assert await closed_with(refused) == (4004, "Authentication failed.")
        [violation] = fake.identify_violations
        assert violation.kind == "session_start_limit" and violation.shard == (0, 2)
        assert len(fake.sessions) == 2
        # after reset_after, remaining is back to total
        await asyncio.sleep(limit["reset_after"] / 1000 + 0.05)
        assert (await gateway_bot(http, fake))["session_start_limit"]["remaining"] == 2
        again = await identify_shard(http, fake, [0, 2])
        await again.until("READY")
        assert fake.session_start_limit["remaining"] == 1
        for gw in (resumed, gws[1], again):
            await gw.ws.close()
