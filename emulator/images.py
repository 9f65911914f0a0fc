"""Fetch the input image of a create call and check it as the API would.

An ``imageUrl`` is an http(s) URL (downloaded with a timeout, stopping past
``contract.MAX_IMAGE_BYTES``) or a ``data:`` URI (base64). The bytes must decode with Pillow as
one of ``contract.IMAGE_FORMATS`` within the pixel and side limits; any failure is a 400
BAD_USER_INPUT that says why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote_to_bytes, urlsplit

import aiohttp
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from emulator.errors import ApiError, bad_input
from shared import contract

# RFC 2606 reserves these names for documentation. The vendor's own samples point at
# https://example.com/your-image.jpg, which does not exist; for any host under them the emulator
# generates a test card instead of downloading, so those samples run unchanged and offline.
DOCUMENTATION_DOMAINS = ("example.com", "example.org", "example.net")

# Inputs are scaled down to this long side once checked: enough for a zoomed 1080p frame,
# and it bounds the memory a queue of jobs holds.
WORKING_MAX_SIDE = 2560

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class InputImage:
    """A checked input image."""

    image: Image.Image  # RGB, at most WORKING_MAX_SIDE on its long side
    sha256: str  # of the bytes received: the render cache's key
    format: str  # a key of contract.IMAGE_FORMATS
    width: int  # as received
    height: int
    source: str  # "url", "data-uri" or "test-card"


def is_documentation_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in DOCUMENTATION_DOMAINS)


def _too_big() -> ApiError:
    return bad_input(
        f"Image is too large: more than {contract.MAX_IMAGE_BYTES} bytes "
        f"({contract.MAX_IMAGE_BYTES // (1024 * 1024)} MB)",
        reason="too_large",
    )


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a ``data:[<mediatype>][;base64],<data>`` URI."""
    header, sep, payload = uri.partition(",")
    if not sep:
        raise bad_input("Malformed data: URI in imageUrl (no comma)", reason="bad_data_uri")
    is_base64 = header.lower().endswith(";base64")
    if is_base64:
        if len(payload) * 3 // 4 > contract.MAX_IMAGE_BYTES + 3:
            raise _too_big()
        try:
            data = base64.b64decode(payload.strip(), validate=False)
        except (binascii.Error, ValueError) as exc:
            raise bad_input(f"Malformed base64 in the data: URI: {exc}", reason="bad_data_uri") from exc
    else:
        data = unquote_to_bytes(payload)
    if len(data) > contract.MAX_IMAGE_BYTES:
        raise _too_big()
    if not data:
        raise bad_input("The data: URI in imageUrl is empty", reason="not_an_image")
    return data


def _open_checked(data: bytes) -> Image.Image:
    """Open (header only) and check format and size. Runs on the event loop thread."""
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is a refusal here, not a log line.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise bad_input(
            f"Image has too many pixels (decompression bomb guard): {exc}", reason="too_many_pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise bad_input(
            "The file is not an image (it could not be decoded as JPEG, PNG or WebP)",
            reason="not_an_image",
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise bad_input(f"The file is not a readable image: {exc}", reason="not_an_image") from exc
    fmt = img.format or "unknown"
    if fmt not in contract.IMAGE_FORMATS:
        allowed = ", ".join(contract.IMAGE_FORMATS)
        raise bad_input(f"Unsupported image format {fmt}: use one of {allowed}", reason="wrong_format")
    width, height = img.size
    pixels = width * height
    limit = contract.MAX_IMAGE_PIXELS
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, int(Image.MAX_IMAGE_PIXELS))
    if pixels > limit:
        raise bad_input(
            f"Image has too many pixels: {width}x{height} = {pixels}, at most {limit}",
            reason="too_many_pixels",
        )
    if min(width, height) < contract.MIN_IMAGE_SIDE:
        raise bad_input(
            f"Image is too small: {width}x{height}, each side must be at least {contract.MIN_IMAGE_SIDE} px",
            reason="too_small",
        )
    if max(width, height) / min(width, height) > contract.MAX_IMAGE_ASPECT:
        raise bad_input(
            f"Image is too narrow: {width}x{height}, the long side may be at most "
            f"{contract.MAX_IMAGE_ASPECT:g} times the short side",
            reason="bad_aspect",
        )
    return img


def _load_rgb(img: Image.Image) -> Image.Image:
    """Decode fully, first frame only, upright, RGB, scaled to the working size. In a thread."""
    try:
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            img = img.convert("RGB")
        img.thumbnail((WORKING_MAX_SIDE, WORKING_MAX_SIDE), Image.Resampling.LANCZOS)
    except (OSError, ValueError, SyntaxError) as exc:
        raise bad_input(f"Image data is corrupt or truncated: {exc}", reason="corrupt") from exc
    return img


async def check_image(data: bytes, source: str) -> InputImage:
    """Validate image bytes and decode them (the decoding in a worker thread)."""
    header = _open_checked(data)
    width, height = header.size
    fmt = header.format or "unknown"
    image = await asyncio.to_thread(_load_rgb, header)
    return InputImage(
        image=image,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        width=width,
        height=height,
        source=source,
    )


@lru_cache(maxsize=32)
def test_card_png(seed_text: str, width: int = 1280, height: int = 720) -> bytes:
    """A deterministic test card (colour bars, a grid, a circle, the URL): enough structure that
    a pan and a zoom are plain to see. Different URLs get different tints."""
    tint = hashlib.sha256(seed_text.encode()).digest()
    img = Image.new("RGB", (width, height), (16 + tint[0] % 48, 16 + tint[1] % 48, 16 + tint[2] % 48))
    draw = ImageDraw.Draw(img)
    bars = [
        (192, 192, 192),
        (192, 192, 0),
        (0, 192, 192),
        (0, 192, 0),
        (192, 0, 192),
        (192, 0, 0),
        (0, 0, 192),
    ]
    bar_w = width / len(bars)
    for i, colour in enumerate(bars):
        draw.rectangle([round(i * bar_w), 0, round((i + 1) * bar_w), height * 2 // 3], fill=colour)
    step = max(16, width // 16)
    for x in range(0, width, step):
        draw.line([(x, 0), (x, height)], fill=(255, 255, 255), width=2)
    for y in range(0, height, step):
        draw.line([(0, y), (width, y)], fill=(255, 255, 255), width=2)
    r = min(width, height) // 4
    cx, cy = width // 2, height // 2
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 255, 255), width=6)
    draw.line([(cx - r, cy), (cx + r, cy)], fill=(255, 255, 255), width=4)
    draw.line([(cx, cy - r), (cx, cy + r)], fill=(255, 255, 255), width=4)
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(
            size=max(12, height // 24)
        )
    except TypeError:  # a Pillow without scalable default font
        font = ImageFont.load_default()
    draw.text(
        (step // 2, height - height // 6), "DOITONG EMULATOR TEST CARD", fill=(255, 255, 255), font=font
    )
    draw.text((step // 2, height - height // 12), seed_text[:80], fill=(220, 220, 220), font=font)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


class ImageFetcher:
    """Fetches input images with one shared HTTP session."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    async def fetch(self, ref: str) -> InputImage:
        if ref[: len(contract.DATA_URI_PREFIX)].lower() == contract.DATA_URI_PREFIX:
            return await check_image(decode_data_uri(ref), "data-uri")
        parts = urlsplit(ref)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise bad_input("imageUrl must be an absolute http(s) URL or a data: URI", reason="bad_url")
        if is_documentation_host(parts.hostname):
            return await check_image(test_card_png(ref), "test-card")
        return await check_image(await self._download(ref), "url")

    async def _download(self, url: str) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        try:
            async with self._session.get(url, timeout=timeout, allow_redirects=True, max_redirects=5) as resp:
                if resp.status != 200:
                    raise bad_input(
                        f"Could not fetch the image: its URL answered HTTP {resp.status}",
                        reason="http_status",
                        status=resp.status,
                    )
                if resp.content_length is not None and resp.content_length > contract.MAX_IMAGE_BYTES:
                    raise _too_big()
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    buf.extend(chunk)
                    if len(buf) > contract.MAX_IMAGE_BYTES:
                        raise _too_big()
                return bytes(buf)
        except ApiError:
            raise
        except TimeoutError as exc:
            raise bad_input(
                f"Could not fetch the image: no complete answer within {self._timeout:g} s",
                reason="unreachable",
            ) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise bad_input(
                f"Could not fetch the image: its URL is unreachable ({type(exc).__name__}: {exc})",
                reason="unreachable",
            ) from exc
