"""The relay over loopback HTTP: what the API and a subscriber see, including every refusal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from bot.inbound.relay_subscriber import SseEvent, SseParser
from relay.server import RelayServer, TokenBucket
from testkit.relay import ALPHA_TOKEN, BETA_TOKEN, job_event, post, sign
from tests.conftest import MakeRelay

pytestmark = pytest.mark.timeout(60)


async def read_stream(
    relay: RelayServer, token: str | None, *, until: int | None = None, headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[list[SseEvent], bytes]:  # fmt: skip
    """The events a subscriber gets: ``until`` of them, or (None) all sent before the stream
    first idles (the relay sends what it holds, then a keep-alive comment)."""
    sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
    sent.update(headers or {})
    events: list[SseEvent] = []
    raw = b""
    parser = SseParser()
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream("GET", relay.base_url + "/events" + query, headers=sent) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(20):
            async for chunk in resp.aiter_bytes():
                raw += chunk
                events += parser.feed(chunk)
                if until is not None and len(events) >= until:
                    break
                if until is None and b": keep-alive" in raw:
                    break
    return events, raw


def envelope(event: SseEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.data)
    return data


async def test_posts_are_held_streamed_unchanged_and_dropped_once_acknowledged(relay: RelayServer) -> None:
    bodies = [job_event(f"job{i}", extra=" spaces  and ünïcode ✓") for i in range(3)]
    async with httpx.AsyncClient() as http:
        for n, body in enumerate(bodies, start=1):
            answer = await post(http, relay.base_url, body)
            assert answer.status_code == 200 and answer.json() == {"ok": True, "id": n}
        assert (await http.get(relay.base_url + "/healthz")).json() == {
            "ok": True,
            "subscribers": 0,
            "held": 3,
        }

        events, raw = await read_stream(relay, ALPHA_TOKEN, until=3)
        assert raw.startswith(b"retry: ")
        assert [e.id for e in events] == ["1", "2", "3"]
        for event, body in zip(events, bodies, strict=True):
            data = envelope(event)
            assert data["body"].encode() == body  # the very bytes the API signed
            assert data["signature"] == sign(body)

        ack = await http.post(
            relay.base_url + "/events/ack",
            json={"up_to": 2},
            headers={"Authorization": f"Bearer {ALPHA_TOKEN}"},
        )
        assert ack.status_code == 200 and ack.json() == {"ok": True, "dropped": 2, "held": 1}
        # A new subscriber with no position gets only what is still held.
        events, _ = await read_stream(relay, ALPHA_TOKEN)
        assert [e.id for e in events] == ["3"]


async def test_a_subscriber_resumes_after_last_event_id_or_after(relay: RelayServer) -> None:
    async with httpx.AsyncClient() as http:
        for i in range(5):
            await post(http, relay.base_url, job_event(f"j{i}"))
    events, _ = await read_stream(relay, ALPHA_TOKEN, headers={"Last-Event-ID": "3"})
    assert [e.id for e in events] == ["4", "5"]
    events, _ = await read_stream(relay, ALPHA_TOKEN, query="?after=4")
    assert [e.id for e in events] == ["5"]
    # A position beyond anything this relay gave (its database was replaced): from the start.
    events, _ = await read_stream(relay, ALPHA_TOKEN, headers={"Last-Event-ID": "999"})
    assert [e.id for e in events] == ["1", "2", "3", "4", "5"]
    async with httpx.AsyncClient() as http:
        bad = await http.get(
            relay.base_url + "/events",
            headers={"Authorization": f"Bearer {ALPHA_TOKEN}", "Last-Event-ID": "minus one"},
        )
        assert bad.status_code == 400


async def test_missing_or_unknown_tokens_get_the_same_401_and_a_token_sees_only_its_channel(
    relay: RelayServer,
) -> None:
    async with httpx.AsyncClient() as http:
        await post(http, relay.base_url, job_event("secret-job"), channel="alpha")
        refusals = []
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer not-a-token-at-all-0000"},
            {"Authorization": f"Bearer {ALPHA_TOKEN}x"},
            {"Authorization": f"Basic {ALPHA_TOKEN}"},
            {"Authorization": "Bearer alpha"},  # a channel's name is not its token
        ):
            for method, path in (("GET", "/events"), ("POST", "/events/ack")):
                answer = await http.request(method, relay.base_url + path, headers=headers, json={"up_to": 1})
                refusals.append((answer.status_code, answer.text, answer.headers.get("www-authenticate")))
        assert set(refusals) == {(401, '{"error": "missing or unknown token"}', 'Bearer realm="relay"')}

        # beta's token: none of alpha's events, and its ack cannot drop them.
        events, _ = await read_stream(relay, BETA_TOKEN)
        assert events == []
        ack = await http.post(
            relay.base_url + "/events/ack",
            json={"up_to": 1},
            headers={"Authorization": f"Bearer {BETA_TOKEN}"},
        )
        assert ack.status_code == 400  # beta has no event 1
    events, _ = await read_stream(relay, ALPHA_TOKEN)
    assert [json.loads(envelope(e)["body"])["id"] for e in events] == ["secret-job"]


async def test_bad_posts_are_refused_and_nothing_is_stored(relay: RelayServer) -> None:
    base = relay.base_url
    async with httpx.AsyncClient() as http:
        assert (await post(http, base, job_event("x"), channel="gamma")).status_code == 404
        assert (await post(http, base, job_event("x"), channel=None)).status_code == 404  # two channels
        big = b'{"id": "' + b"x" * (64 * 1024) + b'"}'
        assert (await post(http, base, big)).status_code == 413

        async def chunked() -> Any:  # no Content-Length: the cap applies while reading
            for _ in range(80):
                yield b"x" * 1024

        streamed = await http.post(
            base + "/webhooks/doitong/alpha", content=chunked(), headers={"X-Doitong-Signature": sign(b"x")}
        )
        assert streamed.status_code == 413
        for malformed in (b"{", b"[1, 2]", b'"text"', b"\xff\xfe{}", b""):
            assert (await post(http, base, malformed)).status_code == 400, malformed
        assert (await post(http, base, job_event("x"), signature=None)).status_code == 401
        assert (await post(http, base, job_event("x"), signature="md5=abc")).status_code == 401
        health = (await http.get(base + "/healthz")).json()
    assert health["held"] == 0 and relay.stored == 0


async def test_with_the_channels_secret_the_relay_drops_forged_posts_early(make_relay: MakeRelay) -> None:
    relay = await make_relay(secrets={"alpha": "test-webhook-secret"})
    async with httpx.AsyncClient() as http:
        body = job_event("x")
        assert (await post(http, relay.base_url, body, signature=sign(body, "guess"))).status_code == 401
        assert (await post(http, relay.base_url, body)).status_code == 200
        # beta has no secret at the relay: stored as is, the bot checks it
        assert (
            await post(http, relay.base_url, body, "beta", signature=sign(body, "guess"))
        ).status_code == 200
    events, _ = await read_stream(relay, ALPHA_TOKEN)
    assert [envelope(e)["signature"] for e in events] == [sign(body)]


async def test_one_channel_also_answers_on_the_plain_path(make_relay: MakeRelay) -> None:
    relay = await make_relay(tokens={ALPHA_TOKEN: "alpha"})
    async with httpx.AsyncClient() as http:
        assert (await post(http, relay.base_url, job_event("x"), channel=None)).json() == {
            "ok": True,
            "id": 1,
        }
        assert (await post(http, relay.base_url, job_event("y"), channel="alpha")).json() == {
            "ok": True,
            "id": 2,
        }


async def test_rate_limit_per_channel_answers_429_with_retry_after(make_relay: MakeRelay) -> None:
    relay = await make_relay(rate_per_minute=5)
    async with httpx.AsyncClient() as http:
        answers = [await post(http, relay.base_url, job_event(f"j{i}")) for i in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert (await post(http, relay.base_url, job_event("b"), channel="beta")).status_code == 200


async def test_a_webhook_retried_by_the_api_reaches_the_subscriber_once(relay: RelayServer) -> None:
    body = job_event("job1")
    async with httpx.AsyncClient() as http:
        answers = [(await post(http, relay.base_url, body)).json() for _ in range(5)]
        other = (await post(http, relay.base_url, job_event("job2"))).json()
    assert answers == [{"ok": True, "id": 1}] + [{"ok": True, "id": 1, "duplicate": True}] * 4
    assert other == {"ok": True, "id": 2}
    events, _ = await read_stream(relay, ALPHA_TOKEN)
    assert [(e.id, envelope(e)["body"].encode()) for e in events] == [("1", body), ("2", job_event("job2"))]


def test_token_bucket_refills_with_time() -> None:
    bucket = TokenBucket(per_minute=60)  # one a second, a burst of 60
    assert all(bucket.take("c", now=0.0) == 0 for _ in range(60))
    assert bucket.take("c", now=0.0) == pytest.approx(1.0)
    assert bucket.take("c", now=1.0) == 0
    assert bucket.take("other", now=1.0) == 0


async def test_a_full_channel_refuses_with_503_until_acknowledged(make_relay: MakeRelay) -> None:
    relay = await make_relay(max_held=2)
    async with httpx.AsyncClient() as http:
        codes = [(await post(http, relay.base_url, job_event(f"j{i}"))).status_code for i in range(3)]
        assert codes == [200, 200, 503]
        await http.post(
            relay.base_url + "/events/ack",
            json={"up_to": 1},
            headers={"Authorization": f"Bearer {ALPHA_TOKEN}"},
        )
        assert (await post(http, relay.base_url, job_event("j3"))).status_code == 200


async def test_acknowledgement_must_be_a_known_id(relay: RelayServer) -> None:
    auth = {"Authorization": f"Bearer {ALPHA_TOKEN}"}
    async with httpx.AsyncClient() as http:
        await post(http, relay.base_url, job_event("x"))
        for bad in ({"up_to": -1}, {"up_to": True}, {"up_to": "1"}, {}, [1], {"up_to": 2}):
            answer = await http.post(relay.base_url + "/events/ack", json=bad, headers=auth)
            assert answer.status_code == 400, bad
        garbage = await http.post(relay.base_url + "/events/ack", content=b"{", headers=auth)
        assert garbage.status_code == 400
        assert (await http.get(relay.base_url + "/healthz")).json()["held"] == 1


async def test_an_idle_stream_carries_keep_alives_and_a_newer_subscriber_replaces_it(
    relay: RelayServer,
) -> None:
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream(
            "GET", relay.base_url + "/events", headers={"Authorization": f"Bearer {ALPHA_TOKEN}"}
        ) as first,
    ):
        chunks = first.aiter_bytes()
        raw = b""
        async with asyncio.timeout(10):
            while b": keep-alive" not in raw:
                raw += await anext(chunks)
        assert relay.subscribed("alpha")
        # The same token connects again (the bot restarted): the old stream ends.
        events, _ = await read_stream(relay, ALPHA_TOKEN)
        async with asyncio.timeout(10):
            async for _ in chunks:
                pass
    assert events == []


async def test_unacknowledged_events_expire_after_the_retention(make_relay: MakeRelay) -> None:
    relay = await make_relay(retention_seconds=0.2, purge_interval=0.05)
    async with httpx.AsyncClient() as http:
        await post(http, relay.base_url, job_event("old"))
        async with asyncio.timeout(10):
            while (await http.get(relay.base_url + "/healthz")).json()["held"]:
                await asyncio.sleep(0.05)
        assert (await post(http, relay.base_url, job_event("new"))).json()["id"] == 2  # ids never reused
