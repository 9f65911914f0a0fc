"""Wire-level checks of the fake with a raw aiohttp client (what discord.py hides or guards locally)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from testkit.fake_discord import FakeConfig, FakeDiscord, MiB

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
