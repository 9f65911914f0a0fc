"""Jobs end to end: the lifecycle, the MP4 at /outputs, webhooks, and injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path

import av
import httpx
import pytest

from emulator.server import Emulator
from shared import contract

from .conftest import (
    KEY,
    SECRET,
    MakeEmulator,
    Receiver,
    data_uri,
    error_of,
    generate,
    picture,
    rest_create,
    wait_for_status,
)

CARD = "https://example.com/your-image.jpg"


def probe(path: Path) -> tuple[int, int, float, int, str]:
    """(width, height, duration s, decoded frames, codec) of an MP4, decoding every frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        codec = stream.codec_context.name
        assert container.duration is not None
        duration = container.duration / av.time_base
        frames = sum(1 for _ in container.decode(stream))
    return width, height, duration, frames, codec


@pytest.mark.parametrize(
    ("aspect", "duration", "size"),
    [("16:9", 5, (170, 96)), ("9:16", 10, (96, 170)), ("1:1", 5, (96, 96))],
)
async def test_job_completes_with_a_real_mp4(
    emu: Emulator, http: httpx.AsyncClient, tmp_path: Path, aspect: str, duration: int, size: tuple[int, int]
) -> None:
    created = await rest_create(
        http,
        {
            "service": "runway-i2v",
            "imageUrl": data_uri(picture()),
            "duration": duration,
            "aspectRatio": aspect,
        },
    )
    assert created.status_code == 200, created.text
    job_id = created.json()["data"]["imagevideo"]["id"]
    seen = await wait_for_status(http, job_id, frozenset({"processing", "completed"}))
    assert seen["url"] is None or seen["status"] == "completed"
    job = await wait_for_status(http, job_id)
    assert job["status"] == "completed", job
    assert job["url"] == f"{emu.public_url}/outputs/{job_id}.mp4"
    assert job["metadata"] == {"duration": duration, "width": size[0], "height": size[1]}
    assert job["completedAt"].endswith("Z") and job["completedAt"] >= job["createdAt"]

    video = await http.get(f"/outputs/{job_id}.mp4")  # the "CDN": no auth
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    path = tmp_path / "out.mp4"
    path.write_bytes(video.content)
    width, height, seconds, frames, codec = probe(path)
    fps = emu.config.fps
    assert (width, height) == size and codec == "h264"
    num, den = contract.ASPECT_RATIO_FRACTIONS[aspect]
    assert width / height == pytest.approx(num / den, rel=0.01)  # even sides: 170x96 for 16:9
    assert abs(seconds - duration) <= 1 / fps
    assert frames == duration * fps


async def test_identical_renders_are_cached(emu: Emulator, http: httpx.AsyncClient) -> None:
    image = data_uri(picture(seed=7))
    ids = [(await generate(http, image)).json()["data"]["generate"]["id"] for _ in range(2)]
    for job_id in ids:
        assert (await wait_for_status(http, job_id))["status"] == "completed"
    assert emu.stats()["renders"] | {"cache_bytes": 0} == {
        "rendered": 1,
        "cache_hits": 1,
        "evicted": 0,
        "cache_bytes": 0,
    }
    first, second = [(await http.get(f"/outputs/{i}.mp4")).content for i in ids]
    assert first == second and first[4:8] == b"ftyp"


# --- webhooks ------------------------------------------------------------------------------


def verify(body: bytes, signature: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


async def test_webhook_is_signed_and_retried_after_receiver_errors(
    emu: Emulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    created = await generate(http, CARD, webhookUrl=receiver.url)
    job_id = created.json()["data"]["generate"]["id"]
    await receiver.wait(3)
    await emu.wait_idle()
    assert len(receiver.deliveries) == 3
    bodies = {d.body for d in receiver.deliveries}
    assert len(bodies) == 1  # the same bytes every attempt
    events = {d.headers["X-Doitong-Delivery"] for d in receiver.deliveries}
    assert len(events) == 1  # a stable event id across retries
    for delivery in receiver.deliveries:
        assert delivery.headers["Content-Type"] == "application/json"
        signature = delivery.headers[contract.SIGNATURE_HEADER]
        assert signature.startswith("sha256=") and signature == signature.lower()
        assert verify(delivery.body, signature, SECRET)
        assert not verify(delivery.body, signature, "wrong-secret")
    payload = json.loads(receiver.deliveries[0].body)
    assert set(payload) == {"id", "status", "url", "service", "createdAt", "completedAt", "metadata"}
    assert payload["id"] == job_id and payload["status"] == "completed" and payload["service"] == "runway-i2v"
    assert payload["metadata"] == {"duration": 5, "width": 170, "height": 96}
    assert payload["url"].endswith(f"/outputs/{job_id}.mp4")
    hooks = emu.stats()["webhooks"]
    assert hooks["sent"] == 3 and hooks["failed_attempts"] == 2 and hooks["delivered"] == 1


async def test_webhook_gives_up_after_the_configured_attempts(
    make_emulator: MakeEmulator, receiver: Receiver
) -> None:
    emu = await make_emulator(webhook_attempts=3)
    receiver.fail_first = 100
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        await generate(http, CARD, webhookUrl=receiver.url)
        await emu.wait_idle()
    assert len(receiver.deliveries) == 3
    hooks = emu.stats()["webhooks"]
    assert hooks["delivered"] == 0 and hooks["exhausted"] == 1 and hooks["failed_attempts"] == 3


async def test_drop_webhook_fault(emu: Emulator, http: httpx.AsyncClient, receiver: Receiver) -> None:
    emu.inject(["drop_webhook"])
    dropped = (await generate(http, CARD, webhookUrl=receiver.url)).json()["data"]["generate"]["id"]
    kept = (await generate(http, CARD, webhookUrl=receiver.url)).json()["data"]["generate"]["id"]
    await emu.wait_idle()
    assert (await wait_for_status(http, dropped))["status"] == "completed"
    assert [json.loads(d.body)["id"] for d in receiver.deliveries] == [kept]
    assert emu.stats()["webhooks"]["dropped"] == 1


async def test_fail_job_fault_refunds_and_notifies(
    emu: Emulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    emu.inject(["fail_job"])
    created = await generate(http, CARD, idem="doomed", webhookUrl=receiver.url)
    job = created.json()["data"]["generate"]
    assert job["creditCost"] == 50
    assert emu.stats()["accounts"]["main"]["credits"] == 100_000 - 50
    final = await wait_for_status(http, job["id"])
    assert final["status"] == "failed" and final["error"] and final["url"] is None
    assert final["creditCost"] == 0 and final["metadata"] is None
    await receiver.wait(1)
    payload = json.loads(receiver.deliveries[0].body)
    assert payload["status"] == "failed" and payload["error"] == final["error"]
    assert verify(
        receiver.deliveries[0].body, receiver.deliveries[0].headers[contract.SIGNATURE_HEADER], SECRET
    )
    state = emu.stats()
    assert state["accounts"]["main"]["credits"] == 100_000
    assert state["jobs"][0]["status"] == "failed" and state["jobs"][0]["creditCost"] == 0
    assert (await http.get(f"/outputs/{job['id']}.mp4")).status_code == 404


# --- request faults ------------------------------------------------------------------------


async def test_fault_500_has_no_effect(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.inject(["500"])
    resp = await generate(http, CARD, idem="k500")
    assert resp.status_code == 500
    assert error_of(resp)["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert contract.RATE_LIMIT_REMAINING_HEADER in resp.headers
    state = emu.stats()["accounts"]["main"]
    assert state["jobs_created"] == 0 and state["credits"] == 100_000
    retry = await generate(http, CARD, idem="k500")
    assert retry.status_code == 200
    assert emu.stats()["accounts"]["main"]["idempotent_replays"] == 0


async def test_fault_500_after_creates_and_bills_then_replays(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.inject(["500-after"])
    lost = await generate(http, CARD, idem="lost")
    assert lost.status_code == 500
    state = emu.stats()
    assert state["accounts"]["main"]["jobs_created"] == 1
    assert state["accounts"]["main"]["credits"] == 100_000 - 50
    retry = await generate(http, CARD, idem="lost")
    assert retry.status_code == 200
    assert retry.json()["data"]["generate"]["id"] == state["jobs"][0]["id"]
    state = emu.stats()["accounts"]["main"]
    assert (
        state["jobs_created"] == 1 and state["idempotent_replays"] == 1 and state["credits"] == 100_000 - 50
    )


async def test_slow_fault_lets_the_client_time_out_after_the_job_exists(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    emu.inject(["slow:0.8"])
    with pytest.raises(httpx.ReadTimeout):
        await http.post(
            "/graphql",
            json={"query": contract.GENERATE_MUTATION, "variables": {"input": {
                "type": "VIDEO", "provider": "runway-i2v", "input": {"imageUrl": CARD}}}},
            headers={"Authorization": f"Bearer {KEY}", "Idempotency-Key": "slowpoke"},
            timeout=0.2,
        )  # fmt: skip
    jobs = emu.stats()["jobs"]
    assert len(jobs) == 1 and jobs[0]["idempotency_key"] == "slowpoke"
    retry = await generate(http, CARD, idem="slowpoke")
    assert retry.json()["data"]["generate"]["id"] == jobs[0]["id"]
    assert emu.stats()["accounts"]["main"]["jobs_created"] == 1


async def test_spurious_429_fault(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.inject(["429"])
    resp = await generate(http, CARD)
    assert resp.status_code == 429
    assert error_of(resp)["extensions"]["code"] == "RATE_LIMITED"
    assert float(resp.headers["Retry-After"]) > 0
    assert resp.headers[contract.RATE_LIMIT_REMAINING_HEADER] == "0"
    assert float(resp.headers[contract.RATE_LIMIT_RESET_HEADER]) > 0
    assert emu.stats()["accounts"]["main"]["jobs_created"] == 0
    assert (await generate(http, CARD)).status_code == 200


async def test_graphql_errors_inside_200(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.set_credits(KEY, 5)
    emu.inject(["graphql-200"])
    ping = await http.post("/graphql", json={"query": contract.PING_QUERY}, headers={"X-API-Key": KEY})
    assert ping.status_code == 200  # no error yet: the fault waits for one
    in_200 = await generate(http, CARD)
    assert in_200.status_code == 200
    assert error_of(in_200)["extensions"]["code"] == "INSUFFICIENT_CREDITS"
    assert in_200.json()["data"] == {"generate": None}
    assert (await generate(http, CARD)).status_code == 402  # once only


async def test_graphql_errors_200_option(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(graphql_errors_200=True)
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        resp = await generate(http, CARD, key="nobody")
        assert resp.status_code == 200 and error_of(resp)["extensions"]["code"] == "UNAUTHENTICATED"
        rest = await rest_create(http, {"service": "runway-i2v", "imageUrl": CARD}, key="nobody")
        assert rest.status_code == 401  # REST keeps its statuses


async def test_fault_queue_is_fifo_over_requests(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.inject(["429", "500"])
    codes = [(await generate(http, CARD, idem="fifo")).status_code for _ in range(3)]
    assert codes == [429, 500, 200]
    assert emu.stats()["accounts"]["main"]["jobs_created"] == 1


async def test_random_faults_are_seeded(make_emulator: MakeEmulator) -> None:
    async def run() -> list[int]:
        emu = await make_emulator(error_rate=0.3, rate_limit_rate=0.2, seed=42)
        async with httpx.AsyncClient(base_url=emu.base_url) as http:
            return [(await http.get("/v1/image_to_video/x", headers={"X-API-Key": KEY})).status_code
                    for _ in range(20)]  # fmt: skip

    first, second = await run(), await run()
    assert first == second
    assert {500, 429, 404} <= set(first)


async def test_stop_cancels_running_jobs_and_removes_temp_dir(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(time_scale=1.0)
    out_dir = emu.output_dir
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        assert (await generate(http, CARD)).status_code == 200
    assert out_dir.is_dir()
    await asyncio.wait_for(emu.stop(), 5)
    assert not out_dir.exists()


async def test_stop_during_a_render_aborts_it_and_leaves_nothing(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(video_height=480, fps=24, queue_seconds=0.0)  # a render of seconds
    out_dir = emu.output_dir
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        job_id = (await generate(http, CARD, duration=10)).json()["data"]["generate"]["id"]
        await wait_for_status(http, job_id, frozenset({"processing"}))
    await asyncio.sleep(0.2)  # the render thread is busy now
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(emu.stop(), 5)
    assert asyncio.get_running_loop().time() - started < 1.5
    await asyncio.sleep(0.2)
    assert not out_dir.exists()
