"""The relay as its own process: kill -9 while it holds events, a burst of 1,000
webhooks, and its command line refusing bad settings without printing a token."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

from bot.api.client import ApiJob
from bot.inbound.relay_subscriber import RelaySubscriber
from testkit.accounts import WEBHOOK_SECRET
from testkit.harness import ROOT, free_port
from testkit.relay import ALPHA_TOKEN, RelayProcess, eventually, job_event, post, sign

pytestmark = pytest.mark.timeout(90)


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def __call__(self, job: ApiJob) -> bool:
        self.ids.append(job.id)
        return True


def subscriber(relay: RelayProcess, report: Recorder) -> RelaySubscriber:
    return RelaySubscriber(
        relay.base_url, ALPHA_TOKEN, WEBHOOK_SECRET.encode(), report, backoff_min=0.1, backoff_max=1.0
    )


async def test_relay_killed_while_holding_unacknowledged_events_loses_nothing(tmp_path: Path) -> None:
    relay = RelayProcess(tmp_path, free_port())
    await relay.start()
    try:
        async with httpx.AsyncClient() as http:
            answers = [await post(http, relay.base_url, job_event(f"job{i}")) for i in range(50)]
        assert [a.json()["id"] for a in answers] == list(range(1, 51))  # each 200 came after its commit
        await relay.kill()
        await relay.start()  # same database file
        report = Recorder()
        sub = subscriber(relay, report)
        await sub.start()
        try:
            await eventually(lambda: len(report.ids) >= 50, what="the held events")
            assert report.ids == [f"job{i}" for i in range(50)]
            await eventually(lambda: sub.acked_id == 50)
            # Killed again after the acknowledgement: the acknowledged events stay gone.
            await relay.kill()
            await relay.start()
            async with httpx.AsyncClient() as http:
                assert (await http.get(relay.base_url + "/healthz")).json()["held"] == 0
                assert (await post(http, relay.base_url, job_event("next"))).json()["id"] == 51
            await eventually(lambda: report.ids[-1:] == ["next"], what="the event after two restarts")
            assert len(report.ids) == 51
        finally:
            await sub.stop()
    finally:
        await relay.stop()


async def test_a_burst_of_1000_webhooks_is_delivered_in_full(tmp_path: Path) -> None:
    relay = RelayProcess(tmp_path, free_port(), "--rate-per-minute", "1000000")
    await relay.start()
    report = Recorder()
    sub = subscriber(relay, report)
    await sub.start()
    try:
        await eventually(lambda: sub.connected, what="the subscription")
        ids: dict[int, str] = {}  # the relay's id -> the API's job id
        queue: asyncio.Queue[str] = asyncio.Queue()
        for i in range(1000):
            queue.put_nowait(f"burst{i:04d}")

        url = relay.base_url + "/webhooks/doitong/alpha"

        async def poster(http: aiohttp.ClientSession) -> None:  # like an API sending 50 at once
            while not queue.empty():
                api_id = queue.get_nowait()
                body = job_event(api_id)
                async with http.post(url, data=body, headers={"X-Doitong-Signature": sign(body)}) as answer:
                    assert answer.status == 200, await answer.text()
                    ids[(await answer.json())["id"]] = api_id

        # aiohttp as the sender: httpx's pool, not the relay, caps a 50-connection burst near 150/s.
        started = time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
            await asyncio.gather(*(poster(http) for _ in range(50)))
        posted = time.perf_counter() - started
        await eventually(lambda: len(report.ids) >= 1000, timeout=60, what="all 1000 events")
        delivered = time.perf_counter() - started
        print(
            f"\nrelay burst: 1000 webhooks stored in {posted:.2f}s ({1000 / posted:.0f}/s), "
            f"delivered to the subscriber in {delivered:.2f}s ({1000 / delivered:.0f} events/s)"
        )
        assert sorted(ids) == list(range(1, 1001))
        # Every one delivered once, in the relay's order (the order its commits gave them).
        assert report.ids == [ids[n] for n in sorted(ids)]
        assert len(set(report.ids)) == 1000
        await eventually(lambda: sub.acked_id == 1000)
        async with httpx.AsyncClient() as http:
            assert (await http.get(relay.base_url + "/healthz")).json()["held"] == 0
    finally:
        await sub.stop()
        await relay.stop()


def run_relay(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "relay", "--db", str(tmp_path / "r.db"), *args],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no subscriber token"),
        ({"RELAY_TOKENS": "alpha:short-secret"}, "at least 16 characters"),
        ({"RELAY_TOKENS": "alpha=long-enough-secret-000"}, "entry 1 is not channel:token"),
        ({"RELAY_TOKENS": "al/pha:long-enough-secret-000"}, "channel 'al/pha'"),
        ({"RELAY_TOKENS": "a:long-enough-secret-000,b:long-enough-secret-000"}, "the same token"),
        (
            {"RELAY_TOKENS": "a:long-enough-secret-000", "RELAY_SECRETS": "b:hidden-signing-secret"},
            "channel 'b', which has no token",
        ),
    ],
    ids=["no-tokens", "short", "no-colon", "bad-channel", "shared-token", "secret-without-token"],
)
def test_bad_settings_exit_2_without_printing_secrets(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run_relay(tmp_path, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    for secret in ("short-secret", "long-enough-secret-000", "hidden-signing-secret"):
        assert secret not in result.stderr + result.stdout


def test_tokens_file_and_help(tmp_path: Path) -> None:
    result = run_relay(tmp_path, "--help", env={})
    assert result.returncode == 0 and "--tokens-file" in result.stdout
    missing = run_relay(tmp_path, "--tokens-file", str(tmp_path / "nope.txt"), env={})
    assert missing.returncode == 2 and "cannot read" in missing.stderr
