"""The bot's relay settings: RELAY_URL needs its token, the signing secret and the relay's URL for
this bot's channel; WEBHOOK_PORT=off leaves the bot listening on nothing."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Secret, load_settings

RELAY = {
    "RELAY_URL": "https://relay.example/",
    "RELAY_TOKEN": "subscriber-token-0123456789",
    "DOITONG_WEBHOOK_SECRET": "signing-secret",
    "PUBLIC_WEBHOOK_URL": "https://relay.example/webhooks/doitong/mybot",
}


def test_a_complete_relay_setting() -> None:
    settings = load_settings(RELAY | {"WEBHOOK_PORT": "OFF"})
    assert settings.relay_url == "https://relay.example"
    assert settings.relay_token == Secret("subscriber-token-0123456789")
    assert "subscriber-token" not in repr(settings)
    assert settings.webhook_port is None


def test_the_receiver_stays_on_by_default() -> None:
    assert load_settings({}).webhook_port == 8080
    assert load_settings({"WEBHOOK_PORT": "0"}).webhook_port == 0


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("RELAY_TOKEN", ["RELAY_TOKEN: missing"]),
        ("PUBLIC_WEBHOOK_URL", ["PUBLIC_WEBHOOK_URL: missing; with RELAY_URL"]),
        ("DOITONG_WEBHOOK_SECRET", ["DOITONG_WEBHOOK_SECRET: missing"]),
    ],
)
def test_relay_url_names_what_it_lacks(missing: str, named: list[str]) -> None:
    values = {k: v for k, v in RELAY.items() if k != missing}
    with pytest.raises(ConfigError) as caught:
        load_settings(values)
    assert len(caught.value.problems) == len(named)
    for text in named:
        assert text in str(caught.value)
    assert "subscriber-token" not in str(caught.value) and "signing-secret" not in str(caught.value)


def test_relay_url_alone_names_all_three() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"RELAY_URL": "https://relay.example"})
    message = str(caught.value)
    for name in ("RELAY_TOKEN", "DOITONG_WEBHOOK_SECRET", "PUBLIC_WEBHOOK_URL"):
        assert f"{name}: missing" in message


@pytest.mark.parametrize(("name", "value"), [("RELAY_URL", "wss://relay.example"), ("WEBHOOK_PORT", "of")])
def test_bad_values_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(RELAY | {name: value})
