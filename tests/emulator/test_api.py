"""The emulator's API surface over real loopback HTTP: auth, GraphQL, REST, idempotency,
credits, limits, input validation, admin routes."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from emulator.config import AccountConfig
from emulator.server import Emulator
from shared import contract

from .conftest import (
    FREE_KEY,
    KEY,
    OTHER_KEY,
    SECRET,
    ImageHost,
    MakeEmulator,
    data_uri,
    error_of,
    generate,
    generate_vars,
    gql,
    picture,
    rest_create,
)

CARD = "https://example.com/your-image.jpg"  # a documentation host: a generated test card
RATE_HEADERS = (
    contract.RATE_LIMIT_LIMIT_HEADER,
    contract.RATE_LIMIT_REMAINING_HEADER,
    contract.RATE_LIMIT_RESET_HEADER,
)


def account(emu: Emulator, label: str = "main") -> dict[str, object]:
    state: dict[str, object] = emu.stats()["accounts"][label]
    return state


# --- auth and the basics -------------------------------------------------------------------


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
async def test_both_auth_headers_work_on_graphql(http: httpx.AsyncClient, header: str) -> None:
    resp = await gql(http, contract.PING_QUERY, key=KEY, header=header)
    assert resp.status_code == 200
    assert resp.json() == {"data": {"__typename": "Query"}}
    assert all(h in resp.headers for h in RATE_HEADERS)


async def test_bearer_works_on_rest(http: httpx.AsyncClient) -> None:
    resp = await http.post(
        contract.REST_CREATE_PATH,
        json={"service": "runway-i2v", "imageUrl": CARD},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["imagevideo"]["status"] == "queued"


@pytest.mark.parametrize("key", [None, "not-a-real-key"])
async def test_missing_or_unknown_key_is_401_on_both_transports(
    emu: Emulator, http: httpx.AsyncClient, key: str | None
) -> None:
    resp = await gql(http, contract.PING_QUERY, key=key)
    assert resp.status_code == 401
    assert error_of(resp)["extensions"]["code"] == "UNAUTHENTICATED"
    assert all(h in resp.headers for h in RATE_HEADERS)
    resp = await rest_create(http, {"service": "runway-i2v", "imageUrl": CARD}, key=key)
    assert resp.status_code == 401
    assert error_of(resp)["extensions"]["code"] == "UNAUTHENTICATED"
    resp = await http.get("/v1/image_to_video/abc", headers={} if key is None else {"X-API-Key": key})
    assert resp.status_code == 401
    assert emu.stats()["anonymous"]["requests"] == 3
    assert account(emu)["jobs_created"] == 0


async def test_health_and_unknown_output(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json()["ok"] is True
    assert (await http.get("/outputs/nosuchjob.mp4")).status_code == 404


# --- GraphQL -------------------------------------------------------------------------------


async def test_generate_then_read_two_jobs_in_one_request_with_aliases(http: httpx.AsyncClient) -> None:
    first = await generate(http, CARD, duration=5, motionIntensity="low", version="gen-2")
    second = await generate(http, CARD, duration=10, motionIntensity="high", aspectRatio="9:16")
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    job_a = first.json()["data"]["generate"]
    job_b = second.json()["data"]["generate"]
    assert job_a["status"] == "queued" and job_a["url"] is None and job_a["metadata"] is None
    assert job_a["type"] == "VIDEO" and job_a["provider"] == "runway-i2v"
    assert job_a["creditCost"] == contract.credit_cost("gen-2", 5, "low") == 10
    assert job_b["creditCost"] == contract.credit_cost("gen-4", 10, "high") == 200
    assert job_a["createdAt"].endswith("Z")

    query = (
        "query Two($a: ID!, $b: ID!) {"
        " a: job(id: $a) { id status creditCost __typename }"
        ' b: job(id: $b) { id status url } missing: job(id: "nope") { id } }'
    )
    resp = await gql(http, query, {"a": job_a["id"], "b": job_b["id"]})
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["a"]["id"] == job_a["id"] and data["a"]["__typename"] == "Job"
    assert data["a"]["creditCost"] == 10
    assert data["b"]["id"] == job_b["id"]
    assert data["missing"] is None


async def test_animate_image_mutation_of_the_js_sample(http: httpx.AsyncClient) -> None:
    variables = {
        "input": {"service": "runway-i2v", "imageUrl": CARD, "duration": 5, "motionIntensity": "medium"}
    }
    resp = await gql(http, contract.ANIMATE_IMAGE_MUTATION, variables)
    assert resp.status_code == 200, resp.text
    job = resp.json()["data"]["animateImage"]
    assert set(job) == {"id", "status", "url"} and job["status"] == "queued"


async def test_image_alias_and_prompt_optional(http: httpx.AsyncClient) -> None:
    variables = {"input": {"type": "VIDEO", "provider": "runway-i2v", "input": {"image": CARD}}}
    resp = await gql(http, contract.GENERATE_MUTATION, variables)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["generate"]["creditCost"] == 50  # defaults: gen-4, 5 s, medium


async def test_other_keys_job_is_invisible(http: httpx.AsyncClient) -> None:
    job_id = (await generate(http, CARD)).json()["data"]["generate"]["id"]
    resp = await gql(http, contract.JOB_QUERY, {"id": job_id}, key=OTHER_KEY)
    assert resp.status_code == 200 and resp.json()["data"]["job"] is None
    resp = await http.get(f"/v1/image_to_video/{job_id}", headers={"X-API-Key": OTHER_KEY})
    assert resp.status_code == 404
    assert error_of(resp)["extensions"]["code"] == "NOT_FOUND"


async def test_malformed_requests_are_400(http: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    resp = await http.post("/graphql", content=b"{not json", headers=auth)
    assert resp.status_code == 400 and error_of(resp)["extensions"]["code"] == "BAD_USER_INPUT"
    resp = await http.post("/graphql", json={"variables": {}}, headers=auth)
    assert resp.status_code == 400 and "query" in error_of(resp)["message"]
    resp = await http.post("/graphql", json={"query": "{ job(id: 1) { id }"}, headers=auth)
    assert resp.status_code == 400 and "Syntax Error" in error_of(resp)["message"]
    resp = await http.post("/graphql", json={"query": "{ nosuchfield }"}, headers=auth)
    assert resp.status_code == 400
    resp = await gql(http, contract.GENERATE_MUTATION, {"input": {"type": "VIDEO"}})
    assert resp.status_code == 400 and "provider" in error_of(resp)["message"]


# --- REST ----------------------------------------------------------------------------------


async def test_rest_create_and_get(http: httpx.AsyncClient) -> None:
    body = {
        "service": "runway-i2v",
        "imageUrl": CARD,
        "prompt": "waves roll in",
        "duration": 10,
        "aspectRatio": "1:1",
        "motionIntensity": "low",
        "version": "gen-3",
    }
    resp = await rest_create(http, body)
    assert resp.status_code == 200, resp.text
    job = resp.json()["data"]["imagevideo"]
    assert job["status"] == "queued" and job["creditCost"] == 50 and job["aspectRatio"] == "1:1"
    got = await http.get(f"/v1/image_to_video/{job['id']}", headers={"X-API-Key": KEY})
    assert got.status_code == 200
    assert got.json()["data"]["imagevideo"]["id"] == job["id"]
    missing = await http.get("/v1/image_to_video/doesnotexist", headers={"X-API-Key": KEY})
    assert missing.status_code == 404 and error_of(missing)["extensions"]["code"] == "NOT_FOUND"


# --- idempotency ---------------------------------------------------------------------------


async def test_same_idempotency_key_gives_one_job_billed_once(emu: Emulator, http: httpx.AsyncClient) -> None:
    first = await generate(http, CARD, idem="req-1")
    again = await rest_create(http, {"service": "runway-i2v", "imageUrl": CARD}, idem="req-1")
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["generate"]["id"] == again.json()["data"]["imagevideo"]["id"]
    state = account(emu)
    assert state["jobs_created"] == 1 and state["idempotent_replays"] == 1
    assert state["credits"] == 100_000 - 50
    # scoped per key: another key with the same Idempotency-Key gets its own job
    other = await generate(http, CARD, key=OTHER_KEY, idem="req-1")
    assert other.json()["data"]["generate"]["id"] != first.json()["data"]["generate"]["id"]


async def test_concurrent_duplicates_create_one_job(
    emu: Emulator, http: httpx.AsyncClient, image_host: ImageHost
) -> None:
    slow = image_host.url("slow.png")  # the image download keeps the first create in flight
    answers = await asyncio.gather(*(generate(http, slow, idem="dup") for _ in range(5)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    ids = {a.json()["data"]["generate"]["id"] for a in answers}
    assert len(ids) == 1
    state = account(emu)
    assert state["jobs_created"] == 1 and state["idempotent_replays"] == 4
    assert state["credits"] == 100_000 - 50
    assert image_host.hits["slow.png"] == 1
    assert [j["idempotency_key"] for j in emu.stats()["jobs"]] == ["dup"]


# --- credits -------------------------------------------------------------------------------


async def test_insufficient_credits_is_402_with_the_numbers(emu: Emulator, http: httpx.AsyncClient) -> None:
    emu.set_credits(KEY, 60)
    assert (await generate(http, CARD)).status_code == 200  # 50 of 60
    resp = await generate(http, CARD, motionIntensity="high")  # needs 100, has 10
    assert resp.status_code == 402
    err = error_of(resp)
    assert err["message"] == "Insufficient credits for this operation"
    assert err["extensions"] == {
        "code": "INSUFFICIENT_CREDITS",
        "creditsRequired": 100,
        "creditsAvailable": 10,
    }
    rest = await rest_create(http, {"service": "runway-i2v", "imageUrl": CARD, "version": "gen-3"})
    assert rest.status_code == 402 and error_of(rest)["extensions"]["creditsRequired"] == 25
    # the admin route tops the account up
    topped = await http.post("/_emulator/credits", json={"key": KEY, "credits": 1000})
    assert topped.json() == {"label": "main", "credits": 1000}
    assert (await generate(http, CARD, motionIntensity="high")).status_code == 200
    assert account(emu)["credits"] == 900


# --- limits --------------------------------------------------------------------------------


async def test_rpm_limit_429_with_headers_then_frees(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(time_scale=0.02)  # a 1.2 s window
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        answers = [await gql(http, contract.PING_QUERY, key=FREE_KEY) for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert [int(a.headers[contract.RATE_LIMIT_REMAINING_HEADER]) for a in answers] == list(
            range(9, -1, -1)
        )
        assert answers[0].headers[contract.RATE_LIMIT_LIMIT_HEADER] == "10"
        limited = await gql(http, contract.PING_QUERY, key=FREE_KEY)
        assert limited.status_code == 429
        assert error_of(limited)["extensions"]["code"] == "RATE_LIMITED"
        assert limited.headers[contract.RATE_LIMIT_REMAINING_HEADER] == "0"
        retry_after = float(limited.headers["Retry-After"])
        reset_at = float(limited.headers[contract.RATE_LIMIT_RESET_HEADER])
        assert 0 < retry_after <= 1.2
        assert error_of(limited)["extensions"]["retryAfter"] == pytest.approx(retry_after)
        assert time.time() < reset_at <= time.time() + 1.2
        # a status read counts too, and is refused the same way
        read = await http.get("/v1/image_to_video/x", headers={"X-API-Key": FREE_KEY})
        assert read.status_code == 429
        # another key has its own window
        assert (await gql(http, contract.PING_QUERY, key=KEY)).status_code == 200
        await asyncio.sleep(max(0.0, reset_at - time.time()) + 0.05)
        freed = await gql(http, contract.PING_QUERY, key=FREE_KEY)
        assert freed.status_code == 200
        assert freed.headers[contract.RATE_LIMIT_REMAINING_HEADER] == "9"
    assert account(emu, "free")["rate_limited"] == 2
    assert account(emu, "free")["requests"] == 13


async def test_real_time_headers_are_whole_seconds(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(time_scale=1.0)
    emu.inject(["429"])
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        limited = await gql(http, contract.PING_QUERY)
        ok = await gql(http, contract.PING_QUERY)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"].isdigit() and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers[contract.RATE_LIMIT_REMAINING_HEADER] == "0"
    reset = ok.headers[contract.RATE_LIMIT_RESET_HEADER]
    assert reset.isdigit() and time.time() < int(reset) <= time.time() + 61
    assert ok.headers[contract.RATE_LIMIT_REMAINING_HEADER] == "59"


async def test_concurrency_limit_is_429_until_a_job_ends(emu: Emulator, http: httpx.AsyncClient) -> None:
    first = await generate(http, CARD, key=FREE_KEY, version="gen-2")
    assert first.status_code == 200
    second = await generate(http, CARD, key=FREE_KEY, version="gen-2")
    assert second.status_code == 429
    err = error_of(second)
    assert err["extensions"]["code"] == "RATE_LIMITED" and "oncurrent" in err["message"]
    assert 0 < float(second.headers["Retry-After"]) <= 0.2  # (2 + 15) s x 0.01
    await asyncio.sleep(float(second.headers["Retry-After"]) + 0.1)
    third = await generate(http, CARD, key=FREE_KEY, version="gen-2")
    assert third.status_code == 200, third.text
    assert account(emu, "free")["jobs_created"] == 2


async def test_daily_limit_is_rolling(make_emulator: MakeEmulator) -> None:
    daily = AccountConfig(key=KEY, plan="pro", webhook_secret=SECRET, label="main", jobs_per_day=2)
    emu = await make_emulator(time_scale=0.00002, accounts=[daily])  # a 1.7 s "day"
    async with httpx.AsyncClient(base_url=emu.base_url) as http:
        assert (await generate(http, CARD)).status_code == 200
        assert (await generate(http, CARD)).status_code == 200
        refused = await generate(http, CARD)
        assert refused.status_code == 429
        assert "Daily" in error_of(refused)["message"]
        wait = float(refused.headers["Retry-After"])
        assert 0 < wait <= 86_400 * 0.00002 + 0.01
        await asyncio.sleep(wait + 0.05)
        assert (await generate(http, CARD)).status_code == 200
    assert account(emu)["jobs_created"] == 3
    assert account(emu)["limits"] == {"requests_per_minute": 60, "concurrent_jobs": 10, "jobs_per_day": 2}


# --- input validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("duration", 7, "input.options.duration"),
        ("aspectRatio", "4:3", "input.options.aspectRatio"),
        ("motionIntensity", "wild", "input.options.motionIntensity"),
        ("version", "gen-9", "input.options.version"),
        ("webhookUrl", "ftp://x", "input.options.webhookUrl"),
    ],
)
async def test_bad_option_is_400_naming_the_field(
    emu: Emulator, http: httpx.AsyncClient, option: str, value: object, field: str
) -> None:
    resp = await gql(http, contract.GENERATE_MUTATION, generate_vars(CARD, **{option: value}))
    assert resp.status_code == 400
    err = error_of(resp)
    assert err["extensions"]["code"] == "BAD_USER_INPUT"
    assert field in err["message"]
    if option not in ("webhookUrl",):
        allowed = {"duration": "5, 10", "aspectRatio": "16:9, 9:16, 1:1"}.get(option)
        assert allowed is None or allowed in err["message"]
    rest_field = field.rsplit(".", 1)[1]
    rest = await rest_create(http, {"service": "runway-i2v", "imageUrl": CARD, rest_field: value})
    assert rest.status_code == 400 and rest_field in error_of(rest)["message"]
    assert account(emu)["jobs_created"] == 0


async def test_bad_type_provider_and_service_are_400(http: httpx.AsyncClient) -> None:
    variables = generate_vars(CARD)
    variables["input"]["type"] = "IMAGE"
    resp = await gql(http, contract.GENERATE_MUTATION, variables)
    assert resp.status_code == 400 and "input.type" in error_of(resp)["message"]
    variables = generate_vars(CARD)
    variables["input"]["provider"] = "sora"
    resp = await gql(http, contract.GENERATE_MUTATION, variables)
    assert resp.status_code == 400 and "input.provider" in error_of(resp)["message"]
    rest = await rest_create(http, {"imageUrl": CARD})
    assert rest.status_code == 400 and "service" in error_of(rest)["message"]
    rest = await rest_create(http, {"service": "runway-i2v"})
    assert rest.status_code == 400 and "imageUrl" in error_of(rest)["message"]
    rest = await rest_create(http, {"service": "runway-i2v", "imageUrl": CARD, "duration": "5"})
    assert rest.status_code == 400 and "duration" in error_of(rest)["message"]
    gql_type = await gql(http, contract.GENERATE_MUTATION, generate_vars(CARD, duration="five"))
    assert gql_type.status_code == 400 and "duration" in error_of(gql_type)["message"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("notes.txt", "not an image"),
        ("anim.gif", "Unsupported image format GIF"),
        ("tiny.png", "too small"),
        ("bomb.png", "too many pixels"),
        ("big.png", "too large"),
        ("endless.png", "too large"),
        ("missing.png", "HTTP 404"),
    ],
)
async def test_bad_images_are_400_saying_why(
    emu: Emulator, http: httpx.AsyncClient, image_host: ImageHost, name: str, why: str
) -> None:
    resp = await generate(http, image_host.url(name))
    assert resp.status_code == 400, resp.text
    err = error_of(resp)
    assert err["extensions"]["code"] == "BAD_USER_INPUT"
    assert why in err["message"]
    state = account(emu)
    assert state["jobs_created"] == 0 and state["credits"] == 100_000 and state["reserved_credits"] == 0


async def test_unreachable_image_and_bad_data_uri(http: httpx.AsyncClient) -> None:
    resp = await generate(http, "http://127.0.0.1:9/nothing.png")
    assert resp.status_code == 400 and "unreachable" in error_of(resp)["message"]
    resp = await generate(http, "data:image/png;base64,aGVsbG8=")
    assert resp.status_code == 400 and "not an image" in error_of(resp)["message"]
    resp = await generate(http, "file:///etc/passwd")
    assert resp.status_code == 400 and "http(s)" in error_of(resp)["message"]


@pytest.mark.parametrize("name", ["photo.png", "photo.jpg", "photo.webp"])
async def test_accepted_formats(http: httpx.AsyncClient, image_host: ImageHost, name: str) -> None:
    resp = await generate(http, image_host.url(name))
    assert resp.status_code == 200, resp.text


async def test_data_uri_image(http: httpx.AsyncClient) -> None:
    resp = await generate(http, data_uri(picture(fmt="JPEG"), "image/jpeg"))
    assert resp.status_code == 200, resp.text


# --- admin ---------------------------------------------------------------------------------


async def test_state_never_shows_keys_or_secrets(emu: Emulator, http: httpx.AsyncClient) -> None:
    await generate(http, CARD, idem="state-1")
    text = (await http.get("/_emulator/state")).text
    for secret in (KEY, OTHER_KEY, FREE_KEY, SECRET, "other-secret"):
        assert secret not in text
    state = json.loads(text)
    assert set(state["accounts"]) == {"main", "other", "free"}
    assert state["accounts"]["main"]["plan"] == "pro"
    assert state["jobs"][0]["label"] == "main" and state["jobs"][0]["creditCost"] == 50
    assert state["responses_by_status"]["200"] >= 1
    assert set(state["webhooks"]) >= {"sent", "failed_attempts", "dropped", "delivered"}
    # admin routes are not API requests
    assert state["accounts"]["main"]["requests"] == 1


async def test_fault_route_validates_names(emu: Emulator, http: httpx.AsyncClient) -> None:
    bad = await http.post("/_emulator/faults", json={"queue": ["500", "explode"]})
    assert bad.status_code == 400 and "explode" in bad.text
    ok = await http.post("/_emulator/faults", json={"queue": ["500", "slow:0.1", "fail_job"]})
    assert ok.status_code == 200
    assert ok.json()["queued"] == ["500", "slow:0.1", "fail_job"]
    assert emu.stats()["faults_pending"]["requests"] == ["500", "slow:0.1"]
    assert (await http.post("/_emulator/credits", json={"key": "nobody", "credits": 1})).status_code == 404
