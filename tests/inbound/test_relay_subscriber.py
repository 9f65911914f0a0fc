"""The bot's relay subscriber against a real relay on loopback, with a recording completion path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.api.client import ApiJob
from bot.inbound.relay_subscriber import RelaySubscriber, SseEvent, SseParser
from relay.server import RelayServer
from testkit.accounts import WEBHOOK_SECRET
from testkit.relay import ALPHA_TOKEN, eventually, job_event, post, sign
from tests.conftest import MakeRelay

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Stands in for ``Pipeline.report``: records each call; ``known`` decides the answer."""

    def __init__(self, known: Callable[[ApiJob], bool] = lambda job: True) -> None:
        self.calls: list[ApiJob] = []
        self.known = known

    async def __call__(self, job: ApiJob) -> bool:
        self.calls.append(job)
        return self.known(job)

    @property
    def ids(self) -> list[str]:
        return [j.id for j in self.calls]


@pytest.fixture
async def subscribers() -> AsyncIterator[Callable[..., RelaySubscriber]]:
    made: list[RelaySubscriber] = []

    def make(relay: RelayServer, report: Any, **kwargs: Any) -> RelaySubscriber:
        values: dict[str, Any] = {"backoff_min": 0.05, "backoff_max": 0.5, "ack_delay": 0.01}
        values.update(kwargs)
        sub = RelaySubscriber(relay.base_url, ALPHA_TOKEN, WEBHOOK_SECRET.encode(), report, **values)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        await sub.stop()


async def held(relay: RelayServer) -> int:
    async with httpx.AsyncClient() as http:
        count: int = (await http.get(relay.base_url + "/healthz")).json()["held"]
        return count


async def test_events_reach_the_completion_path_in_order_and_are_acknowledged(
    relay: RelayServer, subscribers: Callable[..., RelaySubscriber]
) -> None:
    report = Recorder()
    changes: list[bool] = []
    sub = subscribers(relay, report, on_change=changes.append)
    async with httpx.AsyncClient() as http:
        for i in range(10):  # some wait at the relay before the bot subscribes
            await post(http, relay.base_url, job_event(f"job{i}"))
        await sub.start()
        await eventually(lambda: len(report.calls) == 10, what="the backlog")
        for i in range(10, 20):  # and some arrive while it listens
            await post(http, relay.base_url, job_event(f"job{i}", "failed", error="boom"))
    await eventually(lambda: len(report.calls) == 20, what="the live events")
    assert report.ids == [f"job{i}" for i in range(20)]
    assert report.calls[0].url == "https://cdn.example/job0.mp4"
    assert report.calls[-1].status == "failed" and report.calls[-1].error == "boom"
    assert sub.connected and changes == [True]
    await eventually(lambda: sub.acked_id == 20, what="the acknowledgement")
    assert await held(relay) == 0
    assert (sub.delivered, sub.rejected, sub.given_up) == (20, 0, 0)


async def test_forged_and_malformed_events_are_dropped_without_reaching_the_completion_path(
    relay: RelayServer, subscribers: Callable[..., RelaySubscriber]
) -> None:
    report = Recorder()
    sub = subscribers(relay, report)
    forged = job_event("victim", url="http://evil.example/x.mp4")
    not_a_job = json.dumps({"hello": "world"}).encode()
    async with httpx.AsyncClient() as http:
        # The relay holds no secret for alpha, so it stores these; the bot must refuse them.
        assert (await post(http, relay.base_url, forged, signature=sign(forged, "guess"))).status_code == 200
        assert (await post(http, relay.base_url, not_a_job)).status_code == 200  # signed, not a job
        await post(http, relay.base_url, job_event("real"))
    await sub.start()
    await eventually(lambda: report.ids == ["real"] and sub.acked_id == 3, what="the genuine event")
    assert sub.rejected == 2 and sub.delivered == 1
    assert await held(relay) == 0  # dropped: acknowledged, not kept forever


async def test_an_unknown_job_is_retried_then_left_to_the_poller(
    relay: RelayServer, subscribers: Callable[..., RelaySubscriber]
) -> None:
    answers = {"late": [False, False, True], "never": [False] * 1000}

    def known(job: ApiJob) -> bool:
        return answers[job.id].pop(0) if job.id in answers else True

    report = Recorder(known)
    sub = subscribers(relay, report, unknown_retry_for=0.5)
    async with httpx.AsyncClient() as http:
        for api_id in ("late", "never", "after"):
            await post(http, relay.base_url, job_event(api_id))
    await sub.start()
    await eventually(lambda: "after" in report.ids and sub.acked_id == 3, what="the last event")
    assert report.ids.count("late") == 3  # known at the third try
    assert report.ids.count("never") >= 2  # retried for a while, then given up
    assert report.ids[-1] == "after"  # order kept: later events waited behind
    assert (sub.delivered, sub.given_up) == (2, 1)


async def test_reconnects_after_the_relay_restarts_and_resumes_after_the_last_event(
    make_relay: MakeRelay, subscribers: Callable[..., RelaySubscriber]
) -> None:
    relay = await make_relay()
    port = relay.port
    report = Recorder()
    changes: list[bool] = []
    sub = subscribers(relay, report, on_change=changes.append)
    await sub.start()
    async with httpx.AsyncClient() as http:
        for i in range(3):
            await post(http, relay.base_url, job_event(f"before{i}"))
        await eventually(lambda: len(report.calls) == 3)
        await relay.stop()
        await eventually(lambda: not sub.connected, what="the drop")
        relay = await make_relay(port=port)  # same port, same database
        for i in range(3):
            await post(http, relay.base_url, job_event(f"after{i}"))
    await eventually(lambda: len(report.calls) == 6, what="the events after the restart")
    assert report.ids == [f"before{i}" for i in range(3)] + [f"after{i}" for i in range(3)]
    assert changes[:3] == [True, False, True]
    assert sub.connects >= 2
    await eventually(lambda: sub.acked_id == 6)


async def test_events_handled_but_not_acknowledged_come_again_after_a_crash(
    relay: RelayServer, subscribers: Callable[..., RelaySubscriber]
) -> None:
    first = Recorder()
    crashed = subscribers(relay, first, ack_delay=3600)  # handles, never gets to acknowledge
    async with httpx.AsyncClient() as http:
        for i in range(4):
            await post(http, relay.base_url, job_event(f"job{i}"))
    await crashed.start()
    await eventually(lambda: len(first.calls) == 4)
    assert crashed._task is not None and crashed._session is not None
    crashed._task.cancel()  # a crash: no goodbye, no final acknowledgement
    await crashed._session.close()
    crashed._session = None

    second = Recorder()
    restarted = subscribers(relay, second)  # a new process: no memory of the first
    await restarted.start()
    await eventually(lambda: second.ids == [f"job{i}" for i in range(4)], what="the repeat")
    await eventually(lambda: restarted.acked_id == 4)


async def test_a_refused_token_never_connects(
    relay: RelayServer, subscribers: Callable[..., RelaySubscriber]
) -> None:
    changes: list[bool] = []
    sub = subscribers(relay, Recorder(), on_change=changes.append)
    sub._token = "wrong-token-0123456789"
    await sub.start()
    await asyncio.sleep(0.3)  # let it try (and be refused)
    assert not sub.connected and changes == [] and sub.connects == 0
    assert "wrong-token" not in repr(sub)


def test_sse_parser_reads_the_format_across_chunk_boundaries() -> None:
    stream = (
        b"retry: 2000\r\n\r\n: keep-alive\n\nid: 1\ndata: one\n\n"
        b"id: 2\r\ndata: two\r\ndata: lines\r\n\r\n"
        b"event: other\rid: 3\rdata:three\r\r"
        b"data: no id\n\n"
    )
    expected = [
        SseEvent("1", "message", "one"),
        SseEvent("2", "message", "two\nlines"),
        SseEvent("3", "other", "three"),
        SseEvent("3", "message", "no id"),  # the last id carries on, as the format says
    ]
    for size in (1, 2, 3, 7, len(stream)):
        parser = SseParser()
        events: list[SseEvent] = []
        for start in range(0, len(stream), size):
            events += parser.feed(stream[start : start + size])
        assert events == expected, size


def test_a_subscriber_needs_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        RelaySubscriber("http://127.0.0.1:1", ALPHA_TOKEN, b"", Recorder())
