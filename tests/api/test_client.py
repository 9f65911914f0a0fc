"""The API client against the real emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest

from bot.api.client import (
    APIUnreachableError,
    AuthenticationError,
    BadRequestError,
    CreateRequest,
    DoitongClient,
    InsufficientCreditsError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
)
from emulator.server import Emulator
from testkit.accounts import FREE_KEY, PRO_KEY, emulator_config
from testkit.images import picture

IMAGE = "data:image/png;base64," + base64.b64encode(picture(160, 120)).decode()


def request(**overrides: object) -> CreateRequest:
    values: dict[str, object] = {"image_url": IMAGE, "prompt": "the sea moves", "version": "gen-2"}
    values.update(overrides)
    return CreateRequest(**values)  # type: ignore[arg-type]


class Sleeps:
    """Records each backoff the client asks for, then sleeps for real (scaled time is short)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


def client_for(emu: Emulator, key: str = PRO_KEY, **kwargs: object) -> DoitongClient:
    kwargs.setdefault("retry", RetryPolicy(max_retries=4, base_delay=0.01, max_delay=0.05))
    return DoitongClient(emu.base_url, key, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[DoitongClient]:
    async with client_for(emulator) as c:
        yield c


def account(emu: Emulator, label: str) -> dict[str, object]:
    accounts = emu.stats()["accounts"]
    assert isinstance(accounts, dict)
    result = accounts[label]
    assert isinstance(result, dict)
    return result


async def wait_finished(client: DoitongClient, job_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await client.get_job(job_id)
        assert job is not None
        if job.finished:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# --- success ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["graphql", "rest"])
async def test_create_then_read_until_completed(emulator: Emulator, transport: str) -> None:
    async with client_for(emulator, transport=transport) as client:
        job = await client.create_job(request(), idempotency_key=f"k-{transport}")
        assert job.status in ("queued", "processing")
        assert job.url is None
        await wait_finished(client, job.id)
        done = await client.get_job(job.id)
    assert done is not None and done.status == "completed"
    assert done.url is not None and done.url.endswith(f"/outputs/{job.id}.mp4")
    assert done.credit_cost == 10
    assert done.metadata is not None and done.metadata["duration"] == 5


async def test_many_jobs_are_read_in_one_request(emulator: Emulator, client: DoitongClient) -> None:
    ids = [(await client.create_job(request(), idempotency_key=f"many-{i}")).id for i in range(3)]
    before = account(emulator, "pro")["requests"]
    jobs = await client.get_jobs([*ids, "no-such-job"])
    assert account(emulator, "pro")["requests"] == before + 1  # type: ignore[operator]
    assert set(jobs) == {*ids, "no-such-job"}
    assert jobs["no-such-job"] is None
    assert all(jobs[i] is not None and jobs[i].id == i for i in ids)  # type: ignore[union-attr]


async def test_unknown_job_reads_as_none_on_both_transports(emulator: Emulator) -> None:
    for transport in ("graphql", "rest"):
        async with client_for(emulator, transport=transport) as client:
            assert await client.get_job("nope") is None


async def test_rate_limit_headers_are_exposed(client: DoitongClient) -> None:
    first = await client.ping()
    second = await client.ping()
    assert first.limit == 60 and second.limit == 60
    assert first.remaining is not None and second.remaining == first.remaining - 1
    assert second.reset_at is not None and second.reset_at > time.time() - 1


# --- each error of the contract --------------------------------------------------------------


async def test_400_bad_image_is_not_retried(emulator: Emulator, client: DoitongClient) -> None:
    bad = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    with pytest.raises(BadRequestError) as caught:
        await client.create_job(request(image_url=bad), idempotency_key="bad-1")
    assert caught.value.status == 400 and caught.value.code == "BAD_USER_INPUT"
    assert "image" in caught.value.message.lower()
    assert client.requests_sent == 1
    assert account(emulator, "pro")["jobs_created"] == 0


async def test_401_wrong_key_hides_the_key(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_key = "wrong-key-SHOULD-NOT-LEAK"
    async with client_for(emulator, key=secret_key) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.create_job(request(), idempotency_key="auth-1")
        assert client.requests_sent == 1
        shown = f"{caught.value!s} {caught.value!r} {client!r} {caplog.text}"
    assert caught.value.status == 401 and caught.value.code == "UNAUTHENTICATED"
    assert secret_key not in shown


async def test_402_carries_required_and_available(emulator: Emulator, client: DoitongClient) -> None:
    emulator.set_credits(PRO_KEY, 30)
    with pytest.raises(InsufficientCreditsError) as caught:
        await client.create_job(request(version="gen-4"), idempotency_key="credits-1")
    assert (caught.value.credits_required, caught.value.credits_available) == (50, 30)
    assert caught.value.status == 402 and client.requests_sent == 1


async def test_402_inside_a_graphql_200_is_the_same_error(emulator: Emulator, client: DoitongClient) -> None:
    emulator.set_credits(PRO_KEY, 5)
    emulator.inject(["graphql-200"])
    with pytest.raises(InsufficientCreditsError) as caught:
        await client.create_job(request(), idempotency_key="credits-200")
    assert (caught.value.credits_required, caught.value.credits_available) == (10, 5)


async def test_500_that_persists_becomes_server_error(emulator: Emulator) -> None:
    emulator.inject(["500"] * 3)
    async with client_for(emulator, retry=RetryPolicy(max_retries=2, base_delay=0.01)) as client:
        with pytest.raises(ServerError) as caught:
            await client.create_job(request(), idempotency_key="down-1")
        assert client.requests_sent == 3
    assert caught.value.code == "INTERNAL_SERVER_ERROR"
    assert account(emulator, "pro")["jobs_created"] == 0


async def test_429_from_rate_window_without_retries(emulator: Emulator) -> None:
    async with client_for(emulator, key=FREE_KEY, retry=RetryPolicy(max_retries=0)) as client:
        for _ in range(10):
            await client.ping()
        with pytest.raises(RateLimitedError) as caught:
            await client.ping()
    assert caught.value.retry_after is not None and caught.value.retry_after <= 60 * 0.01 + 0.01
    assert caught.value.retry_at is not None


async def test_unreachable_api(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    async with DoitongClient(
        f"http://127.0.0.1:{port}", "key-SHOULD-NOT-LEAK", retry=RetryPolicy(max_retries=2, base_delay=0.01),
        sleep=sleeps,
    ) as client:  # fmt: skip
        with pytest.raises(APIUnreachableError) as caught:
            await client.ping()
    assert len(sleeps.delays) == 2
    assert "did not answer" in str(caught.value) and "SHOULD-NOT-LEAK" not in str(caught.value) + caplog.text


# --- retries never double-bill ---------------------------------------------------------------


async def test_500_after_the_effect_then_success_bills_one_job(
    emulator: Emulator, client: DoitongClient
) -> None:
    emulator.inject(["500-after"])  # the job is created and billed, the answer is lost
    job = await client.create_job(request(), idempotency_key="lost-answer")
    assert client.requests_sent == 2
    pro = account(emulator, "pro")
    assert pro["jobs_created"] == 1 and pro["idempotent_replays"] == 1
    assert pro["credits"] == 100_000 - 10
    assert [j["id"] for j in emulator.stats()["jobs"]] == [job.id]  # type: ignore[index,union-attr]


async def test_timeout_then_success_bills_one_job(emulator: Emulator) -> None:
    emulator.inject(["slow:1.5"])  # created at once, answered after our timeout
    async with client_for(emulator, timeout=0.5) as client:
        job = await client.create_job(request(), idempotency_key="slow-answer")
        assert client.requests_sent == 2
    pro = account(emulator, "pro")
    assert pro["jobs_created"] == 1 and pro["credits"] == 100_000 - 10
    assert [j["id"] for j in emulator.stats()["jobs"]] == [job.id]  # type: ignore[index,union-attr]


async def test_spurious_429_then_success(emulator: Emulator, client: DoitongClient) -> None:
    emulator.inject(["429", "500"])
    job = await client.create_job(request(), idempotency_key="bumpy")
    assert client.requests_sent == 3
    assert account(emulator, "pro")["jobs_created"] == 1
    assert job.id


async def test_429_waits_until_the_window_resets() -> None:
    # Free plan: 10 requests per (scaled) minute. The 11th waits for the reset, then succeeds.
    async with Emulator(emulator_config(time_scale=0.05)) as emu:
        sleeps = Sleeps()
        async with client_for(
            emu, key=FREE_KEY, sleep=sleeps, retry=RetryPolicy(max_retries=3, base_delay=0.01)
        ) as c:
            for _ in range(10):
                await c.ping()
            reset_at = c.rate_limit.reset_at
            assert reset_at is not None and c.rate_limit.remaining == 0
            before = time.time()
            await c.ping()
            after = time.time()
        assert len(sleeps.delays) == 1
        # It waited for the reset the server announced, not a blind backoff.
        assert sleeps.delays[0] >= reset_at - before - 0.01
        assert after >= reset_at
        assert account(emu, "free")["rate_limited"] == 1


async def test_hint_beyond_patience_is_raised_not_waited() -> None:
    # Free allows 1 job at a time; in real time the first one frees its slot ~17 s later, past
    # this client's patience, so it reports instead of sleeping.
    async with Emulator(emulator_config(time_scale=1.0)) as emu:
        sleeps = Sleeps()
        async with client_for(
            emu, key=FREE_KEY, sleep=sleeps, retry=RetryPolicy(max_retries=3, max_hint=5.0)
        ) as c:
            await c.create_job(request(), idempotency_key="first")
            with pytest.raises(RateLimitedError) as caught:
                await c.create_job(request(), idempotency_key="second")  # concurrency 1 on Free
        assert sleeps.delays == []
        assert caught.value.retry_after is not None and caught.value.retry_after > 1
