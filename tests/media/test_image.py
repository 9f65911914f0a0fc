import io
import struct
import zlib

import pytest
from PIL import Image

from bot.media.image import InvalidImage, validate_image
from shared import contract
from testkit.images import picture


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_accepts_the_three_formats(fmt: str, mime: str) -> None:
    info = validate_image(picture(fmt=fmt), mime)
    assert (info.format, info.mime, info.width, info.height) == (fmt, mime, 320, 240)


def test_refuses_bytes_that_are_not_an_image() -> None:
    with pytest.raises(InvalidImage, match="not an image"):
        validate_image(b"%PDF-1.7 definitely a document", "image/png")


def test_refuses_other_formats_whatever_the_declared_type() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, format="GIF")
    with pytest.raises(InvalidImage, match="GIF"):
        validate_image(buf.getvalue(), "image/png")


def test_refuses_a_declared_non_image_type() -> None:
    with pytest.raises(InvalidImage, match="application/pdf"):
        validate_image(picture(), "application/pdf")


def test_refuses_truncated_file() -> None:
    data = picture(fmt="JPEG")
    with pytest.raises(InvalidImage, match="decoded"):
        validate_image(data[: len(data) // 2])


def test_refuses_too_many_bytes_without_decoding() -> None:
    with pytest.raises(InvalidImage, match=r"limit is 10\.0 MiB"):
        validate_image(b"\x89PNG" + b"\0" * contract.MAX_IMAGE_BYTES)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: the shape of a decompression bomb, a few bytes long."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("w", "h"), [(10_000, 10_000), (60_000, 60_000)])
def test_refuses_decompression_bombs(w: int, h: int) -> None:
    with pytest.raises(InvalidImage, match="too many pixels"):
        validate_image(_png_header_only(w, h))


def test_refuses_tiny_and_extreme_aspect() -> None:
    with pytest.raises(InvalidImage, match="at least 64 px"):
        validate_image(picture(32, 32))
    with pytest.raises(InvalidImage, match="Crop it"):
        validate_image(picture(1000, 100))


def test_the_usage_chart_is_a_png_with_both_panels() -> None:
    from datetime import date, timedelta

    from bot.media.charts import usage_chart

    days = [(date(2026, 11, 1) + timedelta(days=n), n * 10) for n in range(30)]
    png = usage_chart(days, [("alice", 12), ("bob", 3)])
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (900, 320)
