"""What one REST request costs the fake, with and without validation against the spec.

``python -m testkit.fake_discord.measure_cost [N]``: N (default 2,000) requests of each kind, one
at a time over one keep-alive connection on loopback (so the figure is the fake's time plus the
client's, the same for both runs): a channel post with an embed and a row of buttons (the bot's
status card), its edit, a read of it, and ``GET /users/@me``. Prints microseconds per request:
wall clock, and CPU time of the process (fake and client), which a busy machine disturbs less.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from typing import Any

import aiohttp

from testkit.fake_discord import FakeConfig, FakeDiscord

TOKEN = "cost-token"
AUTH = {"Authorization": f"Bot {TOKEN}"}
CARD: dict[str, Any] = {
    "content": "Job 42",
    "embeds": [{"title": "Animating", "description": "the boat rocks gently", "color": 5793266}],
    "components": [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 4, "label": "Cancel", "custom_id": "job:cancel:42"},
                {"type": 2, "style": 2, "label": "Status", "custom_id": "job:status:42"},
            ],
        }
    ],
}


async def run(n: int, validate: bool) -> dict[str, tuple[float, float]]:
    config = FakeConfig(token=TOKEN)
    if any(f.name == "validate_spec" for f in dataclasses.fields(config)):
        config = dataclasses.replace(config, validate_spec=validate)
    elif validate:
        raise SystemExit("this checkout's fake has no spec validation")
    out: dict[str, tuple[float, float]] = {}
    async with FakeDiscord(config) as fake, aiohttp.ClientSession(headers=AUTH) as http:
        guild = fake.add_guild("Cost")
        chan = fake.add_text_channel(guild, "general")
        base = f"{fake.api_base}/channels/{chan.id}/messages"
        async with http.post(base, json=CARD) as r:  # warm up: compiles the validators
            msg_id = (await r.json())["id"]
        cases: dict[str, tuple[str, str, dict[str, Any] | None]] = {
            "POST message": ("POST", base, CARD),
            "PATCH message": ("PATCH", f"{base}/{msg_id}", {"content": "Job 42: done"}),
            "GET message": ("GET", f"{base}/{msg_id}", None),
            "GET /users/@me": ("GET", f"{fake.api_base}/users/@me", None),
        }
        for name, (method, url, body) in cases.items():
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                async with http.request(method, url, json=body) as r:
                    await r.read()
                    assert r.status == 200, (name, r.status)
            out[name] = ((time.perf_counter() - start) / n * 1e6, (time.process_time() - cpu) / n * 1e6)
        assert not fake.spec_violations and not fake.response_violations if validate else True
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    if not _has_validation():  # an older checkout: its fake as it was
        print(f"{'request':<16} {'wall us':>8} {'cpu us':>7}")
        for name, (wall, cpu) in asyncio.run(run(n, False)).items():
            print(f"{name:<16} {wall:>8.0f} {cpu:>7.0f}")
        return
    off, on = asyncio.run(run(n, False)), asyncio.run(run(n, True))
    print(f"{'request':<16} {'wall us off/on':>15} {'cpu us off/on':>14} {'cpu added':>10}")
    for name in off:
        (w0, c0), (w1, c1) = off[name], on[name]
        print(f"{name:<16} {w0:>7.0f}/{w1:<7.0f} {c0:>6.0f}/{c1:<7.0f} {c1 - c0:>10.0f}")


def _has_validation() -> bool:
    return any(f.name == "validate_spec" for f in dataclasses.fields(FakeConfig))


if __name__ == "__main__":
    main()
