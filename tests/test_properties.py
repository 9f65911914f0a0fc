"""Property-based tests (hypothesis) of the two doors untrusted bytes come in by.

(a) The webhook receiver, over a real loopback socket, with the bot's own Pipeline.report on a
real Store behind it: arbitrary bodies (bytes, JSON of any shape, job events with fields of any
type, sizes around and past the limit, chunked or not) and signature headers (absent, garbage,
another body's, right). Never a 500; input that is not a verified job event never reaches
``report`` and writes nothing; no exception escapes into the event loop or aiohttp's handler.

(b) The attachment validator (bot/media.validate_image) with arbitrary bytes, real images of
every format Pillow writes with bytes flipped or cut, and any declared content type: it returns
an ImageInfo or raises InvalidImage, and nothing else.

Two signed inputs these properties found giving a 500 (deep nesting, a lone surrogate) are
pinned by the tests at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import sqlite3
import struct
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.api.client import ApiJob, DoitongClient
from bot.inbound.receiver import MAX_BODY_BYTES, WebhookReceiver
from bot.media.image import ImageInfo, InvalidImage, validate_image
from bot.pipeline.pipeline import Pipeline, PipelineOptions
from bot.store import Store
from shared import contract
from shared.webhooks import WEBHOOK_PATH
from testkit.images import picture
from testkit.recording_messenger import RecordingMessenger

SECRET = b"property-webhook-secret"
KNOWN_API_IDS = [f"propjob{i:04d}" for i in range(40)]
PROPERTY_SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return contract.SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


# --- (a) the webhook receiver ------------------------------------------------------------------


@dataclass
class Receiver:
    """The receiver on loopback in a loop of its own, which every example reuses."""

    loop: asyncio.AbstractEventLoop
    url: str
    store: Store
    session: aiohttp.ClientSession
    reports: list[ApiJob] = field(default_factory=list)
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    logged_errors: list[logging.LogRecord] = field(default_factory=list)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def post(self, body: bytes, headers: dict[str, str], chunked: bool) -> int:
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 16 * 1024):
                yield body[start : start + 16 * 1024]

        data: Any = pieces() if chunked else body
        async with self.session.post(self.url, data=data, headers=headers) as response:
            await response.read()
            return response.status

    async def snapshot(self) -> tuple[int, list[tuple[Any, ...]]]:
        """Rows written by the store's connection so far, and the jobs' states and the ledger."""

        def read(tx: Any) -> tuple[int, list[tuple[Any, ...]]]:  # the SQLite engine's Tx
            rows = tx.rows(
                "SELECT state, COUNT(*) FROM jobs GROUP BY state UNION ALL "
                "SELECT kind, SUM(amount) FROM ledger GROUP BY kind ORDER BY 1"
            )
            return tx.connection.total_changes, [tuple(r) for r in rows]

        return await self.store.engine.run(read)


class _Collect(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record)


def _seed(db: Path, guild_id: int) -> None:
    """Jobs the API is working on, with known API ids and their pool reservations."""
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO guilds (guild_id, balance, created_at) VALUES (?, 0, ?)", (guild_id, now))
    conn.execute(
        "INSERT INTO ledger (guild_id, kind, amount, created_at) VALUES (?, 'grant', ?, ?)",
        (guild_id, 50 * len(KNOWN_API_IDS), now),
    )
    for i, api_id in enumerate(KNOWN_API_IDS):
        conn.execute(
            "INSERT INTO jobs (id, idempotency_key, api_job_id, state, source, user_id, guild_id, channel_id,"
            " image_ref, prompt, duration, aspect_ratio, motion, version, estimated_credits, actual_credits,"
            " created_at, updated_at, submitted_at) VALUES (?, ?, ?, 'processing', 'discord', 7, ?, 8,"
            " 'https://cdn.example/p.png', 'p', 5, '16:9', 'medium', 'gen-4', 50, 50, ?, ?, ?)",
            (f"0prop{i:03d}", f"prop-{i}", api_id, guild_id, now, now, now),
        )
        conn.execute(
            "INSERT INTO ledger (guild_id, job_id, user_id, kind, amount, created_at)"
            " VALUES (?, ?, 7, 'reserve', -50, ?)",
            (guild_id, f"0prop{i:03d}", now),
        )
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    loop = asyncio.new_event_loop()
    tmp = Path(tempfile.mkdtemp(prefix="webhook-properties-"))

    async def setup() -> tuple[Store, Pipeline, DoitongClient, WebhookReceiver, aiohttp.ClientSession]:
        store = await Store.open(tmp / "jobs.db")
        await store.close()
        _seed(tmp / "jobs.db", 4242)
        store = await Store.open(tmp / "jobs.db")
        client = DoitongClient("http://127.0.0.1:9", "never-called")  # the loops are not started
        pipeline = Pipeline(
            store, client, RecordingMessenger(), PipelineOptions(plan=contract.PLANS["pro"], webhook_url="x")
        )
        server = WebhookReceiver(SECRET, pipeline.report)
        await server.start("127.0.0.1", 0)
        return store, pipeline, client, server, aiohttp.ClientSession()

    store, pipeline, client, server, session = loop.run_until_complete(setup())
    harness = Receiver(loop, f"http://127.0.0.1:{server.port}{WEBHOOK_PATH}", store, session)

    async def recording_report(event: ApiJob) -> bool:
        harness.reports.append(event)
        return await pipeline.report(event)

    server.report = recording_report
    loop.set_exception_handler(lambda _loop, context: harness.loop_errors.append(context))
    collect = _Collect(harness.logged_errors)
    watched = [logging.getLogger(name) for name in ("aiohttp.server", "aiohttp.web", "asyncio", "bot")]
    for logger in watched:
        logger.addHandler(collect)
    try:
        yield harness
    finally:
        for logger in watched:
            logger.removeHandler(collect)

        async def teardown() -> None:
            await session.close()
            await server.stop()
            await pipeline.stop()
            await client.aclose()
            await store.close()

        loop.run_until_complete(teardown())
        loop.close()


# Text that SQLite can store: lone surrogates (legal in JSON escapes) are the pinned 500 below.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {
        "id": st.sampled_from(KNOWN_API_IDS) | texts | json_values,
        "status": st.sampled_from(contract.API_STATUSES) | texts | json_values,
    },
    optional={
        "url": st.just("https://cdn.example/out.mp4") | json_values,
        "error": texts | json_values,
        "creditCost": st.integers(-10, 1000) | json_values,
        "metadata": json_values,
        "createdAt": texts | json_values,
        "completedAt": texts | json_values,
    },
)
# Events the bot would act on: a known or unknown job, a real status, a url or an error.
good_events = st.fixed_dictionaries(
    {"id": st.sampled_from(KNOWN_API_IDS) | texts, "status": st.sampled_from(contract.API_STATUSES)},
    optional={
        "url": st.just("https://cdn.example/out.mp4"),
        "error": texts,
        "creditCost": st.integers(0, 200),
        "metadata": st.just({"duration": 5, "width": 1280, "height": 720}),
    },
)
bodies = st.one_of(
    st.binary(max_size=2048),
    events.map(lambda e: json.dumps(e).encode()),
    good_events.map(lambda e: json.dumps(e).encode()),
    good_events.map(lambda e: json.dumps(e, ensure_ascii=False).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    # Sizes around and past the limit, built cheaply from a repeated piece.
    st.tuples(
        st.binary(min_size=1, max_size=4), st.integers(MAX_BODY_BYTES // 4 - 8, MAX_BODY_BYTES // 4 + 8)
    ).map(lambda t: (t[0] * 4)[:4] * t[1]),
    st.integers(0, 3 * MAX_BODY_BYTES).map(lambda n: b"{" * n),
    # Nesting a parser handles (the depth that makes json.loads raise is pinned below).
    st.integers(1, 400).map(lambda d: b"[" * d + b"]" * d),
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str], bool, str]:
    body = draw(bodies)
    kind = draw(
        st.sampled_from(["right", "right-upper", "absent", "garbage", "other-body", "other-secret", "hex"])
    )
    headers: dict[str, str] = {}
    signature = {
        "right": sign(body),
        "right-upper": contract.SIGNATURE_PREFIX + sign(body)[len(contract.SIGNATURE_PREFIX) :].upper(),
        "absent": None,
        "garbage": draw(header_text),
        "other-body": sign(body + b"!"),
        "other-secret": sign(body, b"not-the-secret"),
        "hex": contract.SIGNATURE_PREFIX + draw(st.text(alphabet="0123456789abcdef", max_size=70)),
    }[kind]
    if signature is not None:
        headers[contract.SIGNATURE_HEADER] = signature
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", ""]) | header_text)
    return body, headers, draw(st.booleans()), kind


def is_job_event(body: bytes) -> bool:
    """What the receiver accepts as an event: a JSON object with a string id and status."""
    try:
        event = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(event, dict) and isinstance(event.get("id"), str) and isinstance(event.get("status"), str)
    )


@PROPERTY_SETTINGS
@given(delivery=deliveries())
def test_receiver_never_500s_and_bad_input_changes_nothing(
    receiver: Receiver, delivery: tuple[bytes, dict[str, str], bool, str]
) -> None:
    body, headers, chunked, kind = delivery
    receiver.loop_errors.clear()  # each example answers for its own errors only
    receiver.logged_errors.clear()
    before = receiver.run(receiver.snapshot())
    reports = len(receiver.reports)
    status = receiver.run(receiver.post(body, headers, chunked))
    after = receiver.run(receiver.snapshot())
    event(f"signature {kind}: {status}")  # the spread shows with --hypothesis-show-statistics

    assert status < 500 or status == 503, status  # 503 is "unknown job, retry" from report
    verified = kind.startswith("right") and len(body) <= MAX_BODY_BYTES
    if not verified:
        assert status in (401, 413), status
    elif not is_job_event(body):
        assert status == 400, status
    else:
        assert status in (200, 503), status
        assert len(receiver.reports) == reports + 1
        assert receiver.reports[-1].id == json.loads(body)["id"]
    if status != 200:  # refused, or an unknown job: nothing reached the store
        assert after == before
        assert len(receiver.reports) == reports + (1 if status == 503 else 0)
    assert receiver.loop_errors == []
    assert receiver.logged_errors == []


# --- (b) the attachment validator ----------------------------------------------------------------


def _image(fmt: str, size: tuple[int, int] = (96, 64), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 90, 30) if mode == "RGB" else 128).save(buf, format=fmt)
    return buf.getvalue()


# One small real file per format Pillow writes here (accepted and refused kinds alike).
SAMPLES = [picture(96, 64, fmt) for fmt in ("PNG", "JPEG", "WEBP")] + [
    _image(fmt) for fmt in ("GIF", "BMP", "TIFF", "PPM", "ICO", "TGA", "PCX")
]
# Mostly types that pass the declared-type check, so the bytes get decoded.
declared_types = st.one_of(
    st.sampled_from(["image/png", "image/jpeg", "image/webp", "IMAGE/PNG; charset=binary"]),
    st.sampled_from(["image/png", "image/jpeg", "image/webp", "", " ", ";"]),
    st.none(),
    st.sampled_from(["image/gif", "application/pdf", "x/y;z"]) | st.text(max_size=40),
)


def png_claiming(width: int, height: int, rest: bytes) -> bytes:
    """A PNG claiming ``width`` x ``height`` (a valid IHDR) whose IDAT holds only ``rest``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rest)


# Headers claiming any size (decompression bombs, slivers, extreme ratios) over few real bytes.
claimed_sizes = st.builds(
    png_claiming, st.integers(1, 70_000), st.integers(1, 70_000), st.binary(max_size=64)
)


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=16))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged TIFF tags: not ours to raise
@given(data=st.binary(max_size=4096) | damaged_images() | claimed_sizes, declared=declared_types)
def test_validator_raises_only_invalid_image(data: bytes, declared: str | None) -> None:
    try:
        info = validate_image(data, declared)
    except InvalidImage as refusal:
        assert str(refusal)  # a message the member reads
        event(f"refused: {str(refusal)[:24]}")
        return
    event(f"accepted {info.format}")
    assert isinstance(info, ImageInfo)
    assert info.mime in contract.IMAGE_FORMATS.values()


# --- found by these properties, fixed in bot/inbound/receiver.parse_event --------------------------


def test_deeply_nested_signed_body_is_a_400(receiver: Receiver) -> None:
    body = b"[" * 30_000 + b"]" * 30_000  # under the size limit, past the parser's recursion limit
    status = receiver.run(receiver.post(body, {contract.SIGNATURE_HEADER: sign(body)}, False))
    assert status == 400 and not receiver.logged_errors


def test_signed_event_with_an_unencodable_id_is_a_400(receiver: Receiver) -> None:
    body = b'{"id": "\\ud800", "status": "completed"}'
    status = receiver.run(receiver.post(body, {contract.SIGNATURE_HEADER: sign(body)}, False))
    assert status == 400 and not receiver.logged_errors
