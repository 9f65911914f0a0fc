"""The fake held to Discord's published spec, as a bot author meets it: a request Discord would
refuse gets Discord's 400 / 50035 naming the field and is recorded (so the test that sent it
fails), a route Discord does not have is a 404, the rules Discord enforces beyond its spec are
enforced, and what Discord accepts passes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from testkit.fake_discord import FakeChannel, FakeConfig, FakeDiscord
from testkit.fake_discord.server import watch_fakes
from testkit.fake_discord.validation import valid_command_name

TOKEN = "spec-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}

CARD: dict[str, Any] = {
    "content": "Job 42 is queued",
    "embeds": [{"title": "Animating", "description": "the boat rocks gently", "color": 5793266}],
    "components": [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 4, "label": "Cancel", "custom_id": "job:cancel:42"},
                {"type": 2, "style": 5, "label": "Docs", "url": "https://example.com"},
            ],
        }
    ],
    "allowed_mentions": {"parse": []},
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(FakeConfig(token=TOKEN)) as f:
        yield f


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as s:
        yield s


@pytest.fixture
def channel(fake: FakeDiscord) -> FakeChannel:
    return fake.add_text_channel(fake.add_guild("G"), "general")


def messages_url(fake: FakeDiscord, channel: FakeChannel) -> str:
    return f"{fake.api_base}/channels/{channel.id}/messages"


def commands_url(fake: FakeDiscord) -> str:
    return f"{fake.api_base}/applications/{fake.application_id}/commands"


async def refused(
    fake: FakeDiscord, response: aiohttp.ClientResponse
) -> tuple[dict[str, Any], list[list[str]]]:
    """The 400 / 50035 body, and the fields each recorded violation names (taken: on purpose)."""
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
    return body, [v.fields for v in fake.accept_violations()]


def command(name: str = "animate", **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": "Animate a picture", "type": 1, **fields}


# --- what Discord accepts passes ------------------------------------------------------------------


async def test_a_valid_card_passes_with_nothing_recorded(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    async with http.post(messages_url(fake, channel), json=CARD) as r:
        assert r.status == 200
        msg = await r.json()
    async with http.patch(f"{messages_url(fake, channel)}/{msg['id']}", json={"content": "done"}) as r:
        assert r.status == 200
    async with http.get(f"{messages_url(fake, channel)}?limit=5") as r:
        assert r.status == 200 and len(await r.json()) == 1
    async with http.put(commands_url(fake), json=[command(options=[])]) as r:
        assert r.status == 200
    assert fake.spec_violations == [] and fake.response_violations == []


async def test_discord_py_integer_ids_are_accepted(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    # discord.py sends a new upload's attachments[].id as an int (the spec says a string) and
    # opens DMs with an int recipient_id; Discord accepts both, so the fake does.
    form = aiohttp.FormData(quote_fields=False)
    form.add_field(
        "payload_json", json.dumps({"content": "video", "attachments": [{"id": 0, "filename": "a.mp4"}]})
    )
    form.add_field("files[0]", b"\x00\x00\x00 ftyp", filename="a.mp4", content_type="video/mp4")
    async with http.post(messages_url(fake, channel), data=form) as r:
        assert r.status == 200
        assert (await r.json())["attachments"][0]["filename"] == "a.mp4"
    alice = fake.add_user("alice")
    async with http.post(f"{fake.api_base}/users/@me/channels", json={"recipient_id": alice.id}) as r:
        assert r.status == 200
    # the other way round: an integer field given as a string of digits (the spec types
    # default_member_permissions as an integer, the docs as a string); answers carry a string
    async with http.put(commands_url(fake), json=[command(default_member_permissions="32")]) as r:
        assert r.status == 200
        assert (await r.json())[0]["default_member_permissions"] == "32"
    async with http.put(commands_url(fake), json=[command(default_member_permissions="lots")]) as r:
        _, fields = await refused(fake, r)
    assert fields == [["0.default_member_permissions"]]
    assert fake.spec_violations == [] and fake.response_violations == []


# --- what the spec refuses ----------------------------------------------------------------------------


async def test_a_body_the_spec_refuses_is_400_naming_the_field(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    async with http.post(messages_url(fake, channel), json={"content": "hi", "tts": "yes"}) as r:
        body, fields = await refused(fake, r)
    assert list(body["errors"]) == ["tts"]
    assert body["errors"]["tts"]["_errors"][0]["code"] == "BASE_TYPE_INVALID"
    assert fields == [["tts"]]
    assert fake.channel_messages(channel) == []  # nothing was posted

    # nested fields are named by their path, as Discord does (embeds.0.title)
    async with http.post(messages_url(fake, channel), json={"embeds": [{"title": 5}]}) as r:
        body, fields = await refused(fake, r)
    assert "title" in body["errors"]["embeds"]["0"] and fields == [["embeds.0.title"]]

    # a button label over the spec's 80 characters, inside its action row
    row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "x" * 81, "custom_id": "b"}]}
    async with http.post(messages_url(fake, channel), json={"components": [row]}) as r:
        body, fields = await refused(fake, r)
    assert fields == [["components.0.components.0.label"]]
    assert body["errors"]["components"]["0"]["components"]["0"]["label"]["_errors"][0]["code"] == (
        "BASE_TYPE_MAX_LENGTH"
    )


async def test_path_and_query_values_are_held_to_the_spec(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    async with http.get(f"{messages_url(fake, channel)}?limit=500") as r:  # the spec's maximum is 100
        _, fields = await refused(fake, r)
    assert fields == [["limit"]]
    async with http.get(f"{fake.api_base}/channels/general") as r:  # not a snowflake
        body, fields = await refused(fake, r)
    assert body["errors"]["channel_id"]["_errors"][0]["code"] == "NUMBER_TYPE_COERCE"
    assert fields == [["channel_id"]]


async def test_a_violation_left_unaccepted_is_there_for_the_harness(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    async with http.post(messages_url(fake, channel), json={"content": 7}) as r:
        assert r.status == 400
    [violation] = fake.spec_violations
    assert violation.direction == "request" and violation.status == 400
    assert violation.route == "/channels/{channel_id}/messages" and violation.fields == ["content"]
    assert "content" in str(violation)
    fake.accept_violations()  # else tests/conftest.py's discord_spec_check fails this test


async def test_an_answer_of_the_fake_the_spec_refuses_is_recorded_as_a_fake_bug(
    fake: FakeDiscord, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fake.world.user_json

    def without_flags(user: Any) -> dict[str, Any]:
        data = real(user)
        del data["flags"]  # UserResponse requires it
        return data

    monkeypatch.setattr(fake.world, "user_json", without_flags)
    alice = fake.add_user("alice")
    async with http.get(f"{fake.api_base}/users/{alice.id}") as r:
        assert r.status == 200  # the answer still goes out: the bug is the fake's, not the bot's
    [bug] = fake.response_violations
    assert bug.direction == "response" and bug.fields == ["flags"]
    fake.response_violations.clear()


# --- routes -------------------------------------------------------------------------------------------


async def test_a_route_discord_does_not_have_is_its_404(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{fake.api_base}/channels/1/animations") as r:
        assert r.status == 404
        assert await r.json() == {"message": "404: Not Found", "code": 0}
    async with http.post(f"{fake.api_base}/users/@me") as r:  # a path Discord has, not with POST
        assert r.status == 405
    assert [(u.method, u.path) for u in fake.unknown_requests] == [
        ("GET", "/api/v10/channels/1/animations"),
        ("POST", "/api/v10/users/@me"),
    ]
    assert fake.spec_violations == []  # a 404 is an answer, not a refused form


# --- Discord's rules beyond its spec -----------------------------------------------------------------


async def test_content_is_2000_characters_for_a_bot(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    async with http.post(messages_url(fake, channel), json={"content": "x" * 2000}) as r:
        assert r.status == 200
    async with http.post(messages_url(fake, channel), json={"content": "x" * 2001}) as r:  # the spec: 4,000
        body, fields = await refused(fake, r)
    assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    assert fields == [["content"]]


async def test_at_most_five_action_rows(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: FakeChannel
) -> None:
    def rows(n: int) -> list[dict[str, Any]]:
        return [
            {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": f"b{i}"}]}
            for i in range(n)
        ]

    async with http.post(messages_url(fake, channel), json={"content": "ok", "components": rows(5)}) as r:
        assert r.status == 200
    async with http.post(messages_url(fake, channel), json={"content": "no", "components": rows(6)}) as r:
        _, fields = await refused(fake, r)
    assert fields == [["components"]]


@pytest.mark.parametrize(
    "name",
    ["Animate", "ani mate", "anim@te", "x" * 33, "", "ÉCLAIR"],
)
async def test_command_names_discord_refuses(
    fake: FakeDiscord, http: aiohttp.ClientSession, name: str
) -> None:
    async with http.put(commands_url(fake), json=[command(name)]) as r:
        body, fields = await refused(fake, r)
    assert fields == [["0.name"]]
    assert body["errors"]["0"]["name"]["_errors"][0]["code"] in (
        "APPLICATION_COMMAND_INVALID_NAME",
        "BASE_TYPE_BAD_LENGTH",
    )


@pytest.mark.parametrize(
    "name", ["animate", "pool-resume", "set_quota", "éclair", "日本語", "x" * 32, "हिंदी"]
)
async def test_command_names_discord_accepts(
    fake: FakeDiscord, http: aiohttp.ClientSession, name: str
) -> None:
    async with http.put(commands_url(fake), json=[command(name)]) as r:
        assert r.status == 200, await r.text()
    assert [c["name"] for c in fake.commands()] == [name]


def test_command_name_rule_by_unicode_category() -> None:
    assert valid_command_name("l33t_cmd-2")
    assert valid_command_name("٣")  # a digit of another script is \p{N}
    assert not valid_command_name("a.b") and not valid_command_name("a\u200bb")  # punctuation, format char
    assert not valid_command_name("Ǆ")  # a title-case letter has a lower-case form
    assert not valid_command_name(7)


async def test_option_names_choices_and_descriptions(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    def option(**fields: Any) -> dict[str, Any]:
        return {"type": 3, "name": "motion", "description": "How much it moves", **fields}

    choices = [{"name": f"c{i}", "value": f"c{i}"} for i in range(25)]
    async with http.put(commands_url(fake), json=[command(options=[option(choices=choices)])]) as r:
        assert r.status == 200, await r.text()

    cases: list[tuple[dict[str, Any], str]] = [
        (
            command(options=[option(choices=[*choices, {"name": "c25", "value": "c25"}])]),
            "0.options.0.choices",
        ),
        (command(description="d" * 101), "0.description"),
        (command(options=[option(description="d" * 101)]), "0.options.0.description"),
        (command(options=[option(name="Motion")]), "0.options.0.name"),
        (command(name_localizations={"fr": "Animer"}), "0.name_localizations.fr"),
    ]
    for body, field in cases:
        async with http.put(commands_url(fake), json=[body]) as r:
            _, fields = await refused(fake, r)
        assert fields == [[field]], body


async def test_the_harness_sees_every_fake_a_test_starts() -> None:
    # tests/conftest.py's discord_spec_check reads the violations of the fakes watch_fakes saw
    with watch_fakes() as seen:
        async with FakeDiscord(FakeConfig(token=TOKEN)) as inner:
            pass
    assert seen == [inner]
