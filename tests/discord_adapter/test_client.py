"""The client's part of the receiver's /healthz, before Discord has answered a heartbeat."""

from __future__ import annotations

import json

from bot.config import load_settings
from bot.discord_adapter.client import AnimateBot


async def test_health_before_the_first_heartbeat_is_an_answer_not_an_error() -> None:
    # discord.py's latency is NaN until a heartbeat is acknowledged; the receiver listens before
    # the gateway is up, and /healthz must answer (not fail on round(NaN)) in that window.
    bot = AnimateBot(load_settings({"DISCORD_TOKEN": "not-a-real-token"}))
    health = bot.health()
    assert health == {"discord": False, "latency_ms": None}
    assert json.loads(json.dumps(health)) == health  # what the receiver serialises
    await bot.close()
