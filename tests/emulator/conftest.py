"""Fixtures for the emulator's own tests: emulators on loopback, a local image host, a webhook
receiver. Everything talks real HTTP with httpx (never the bot's client)."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from PIL import Image, ImageDraw

from emulator.config import AccountConfig, EmulatorConfig
from emulator.server import Emulator
from shared import contract

KEY = "emu-test-key-AAAA1111"
OTHER_KEY = "emu-test-key-BBBB2222"
FREE_KEY = "emu-test-key-FREE3333"
SECRET = "emu-webhook-secret-XYZ"


def accounts() -> list[AccountConfig]:
    return [
        AccountConfig(key=KEY, plan="pro", credits=100_000, webhook_secret=SECRET, label="main"),
        AccountConfig(
            key=OTHER_KEY, plan="starter", credits=5_000, webhook_secret="other-secret", label="other"
        ),
        AccountConfig(key=FREE_KEY, plan="free", credits=1_000, webhook_secret=SECRET, label="free"),
    ]


def config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = {
        "port": 0,
        "accounts": accounts(),
        "time_scale": 0.01,
        "fps": 8,
        "video_height": 96,
        "queue_seconds": 2.0,
        "processing_seconds": 15.0,
    }
    values.update(overrides)
    return EmulatorConfig(**values)


MakeEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    started: list[Emulator] = []

    async def make(**overrides: Any) -> Emulator:
        emu = Emulator(config(**overrides))
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        await emu.stop()


@pytest.fixture
async def emu(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator()


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=10) as client:
        yield client


# --- images ------------------------------------------------------------------------------------


def picture(width: int = 320, height: int = 180, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A picture with structure (bars, a circle) so motion shows in frame differences."""
    img = Image.new("RGB", (width, height), (20 + seed % 200, 40, 60))
    draw = ImageDraw.Draw(img)
    for i in range(8):
        x = i * width // 8
        draw.rectangle([x, 0, x + width // 16, height], fill=((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    draw.ellipse([width // 3, height // 4, 2 * width // 3, 3 * height // 4], outline=(255, 255, 255), width=4)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a would-be decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


@dataclass
class ImageHost:
    base_url: str
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@pytest.fixture
async def image_host() -> AsyncIterator[ImageHost]:
    gif = io.BytesIO()
    Image.new("RGB", (200, 200), (255, 0, 0)).save(gif, format="GIF")
    files: dict[str, tuple[bytes, str]] = {
        "photo.png": (picture(), "image/png"),
        "photo.jpg": (picture(fmt="JPEG"), "image/jpeg"),
        "photo.webp": (picture(fmt="WEBP"), "image/webp"),
        "notes.txt": (b"hello, this is not an image\n" * 10, "image/png"),  # lies about its type
        "anim.gif": (gif.getvalue(), "image/gif"),
        "tiny.png": (picture(32, 32), "image/png"),
        "bomb.png": (png_header_only(10_000, 5_000), "image/png"),
        "big.png": (b"\0" * (contract.MAX_IMAGE_BYTES + 1), "image/png"),
    }
    host = ImageHost(base_url="")

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        host.hits[name] = host.hits.get(name, 0) + 1
        if name == "slow.png":
            await asyncio.sleep(0.3)
            return web.Response(body=files["photo.png"][0], content_type="image/png")
        if name == "endless.png":  # chunked, no Content-Length: the cap must stop the read
            resp = web.StreamResponse()
            resp.content_type = "image/png"
            await resp.prepare(request)
            block = b"\0" * 65536
            try:
                for _ in range(contract.MAX_IMAGE_BYTES // len(block) + 64):
                    await resp.write(block)
            except (ConnectionResetError, RuntimeError):
                pass
            return resp
        if name not in files:
            raise web.HTTPNotFound()
        body, mime = files[name]
        return web.Response(body=body, content_type=mime)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield host
    await runner.cleanup()


# --- webhooks ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests first
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.deliveries) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        rec.deliveries.append(Delivery(dict(request.headers), await request.read()))
        rec.arrived.set()
        if len(rec.deliveries) <= rec.fail_first:
            return web.Response(status=500, text="receiver down")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


# --- request helpers ---------------------------------------------------------------------------


def generate_vars(image: str, **options: Any) -> dict[str, Any]:
    return {
        "input": {
            "type": "VIDEO",
            "provider": "runway-i2v",
            "input": {"imageUrl": image, "prompt": "a slow pan"},
            "options": options,
        }
    }


async def gql(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    key: str | None = KEY,
    idem: str | None = None,
    header: str = "bearer",
) -> httpx.Response:
    headers: dict[str, str] = {}
    if key is not None:
        if header == "bearer":
            headers["Authorization"] = f"Bearer {key}"
        else:
            headers["X-API-Key"] = key
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return await http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


async def generate(
    http: httpx.AsyncClient, image: str, *, key: str = KEY, idem: str | None = None, **options: Any
) -> httpx.Response:
    return await gql(http, contract.GENERATE_MUTATION, generate_vars(image, **options), key=key, idem=idem)


async def rest_create(
    http: httpx.AsyncClient, body: dict[str, Any], *, key: str | None = KEY, idem: str | None = None
) -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": key}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return await http.post(contract.REST_CREATE_PATH, json=body, headers=headers)


async def wait_for_status(
    http: httpx.AsyncClient,
    job_id: str,
    statuses: frozenset[str] = contract.TERMINAL_API_STATUSES,
    *,
    key: str = KEY,
) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            resp = await http.get(f"/v1/image_to_video/{job_id}", headers={"X-API-Key": key})
            if resp.status_code == 429:  # polling faster than the scaled window allows
                await asyncio.sleep(float(resp.headers["Retry-After"]))
                continue
            assert resp.status_code == 200, resp.text
            job: dict[str, Any] = resp.json()["data"]["imagevideo"]
            if job["status"] in statuses:
                return job
            await asyncio.sleep(0.03)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    errors = resp.json()["errors"]
    assert isinstance(errors, list) and errors
    first: dict[str, Any] = errors[0]
    return first
