"""Images in: decode and bound-check before anything is spent.

Pillow does the decoding (a declared content type is only the uploader's claim). The limits
are the API's (``contract``): the user hears "too big" from us at once instead of from the API
after a queue wait, and no job or credit is touched by input the API would refuse.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from shared import contract


class InvalidImage(ValueError):
    """The bytes are not an image the API takes; the message says what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # Pillow's name: JPEG, PNG, WEBP
    mime: str
    width: int
    height: int
    size: int  # bytes


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


ACCEPTED = "JPEG, PNG or WebP"


def check_image_size(size: int) -> None:
    """The byte-size check alone, for callers that know the size before reading the bytes."""
    if size > contract.MAX_IMAGE_BYTES:
        raise InvalidImage(
            f"the image is {_mib(size)}; the limit is {_mib(contract.MAX_IMAGE_BYTES)}. "
            "Export it smaller (e.g. as JPEG at 2048 px on the long side)."
        )
    if size == 0:
        raise InvalidImage(f"the file is empty; attach a {ACCEPTED} image")


def validate_image(data: bytes, declared_type: str | None = None) -> ImageInfo:
    """Decode ``data`` fully and check it against the API's limits, or raise InvalidImage."""
    check_image_size(len(data))
    if declared_type is not None:
        declared = declared_type.split(";")[0].strip().lower()
        if declared and declared not in contract.IMAGE_FORMATS.values():
            raise InvalidImage(f"the file is declared as {declared!r}; attach a {ACCEPTED} image")
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its limit, raises) on decompression bombs; both are refusals.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in contract.IMAGE_FORMATS:
                    raise InvalidImage(f"the file is a {fmt or 'unknown'} image; attach a {ACCEPTED} image")
                _check_dimensions(width, height)
                img.load()  # the real decode: a truncated or corrupt file fails here
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidImage(_too_many_pixels_message()) from None
    except UnidentifiedImageError:
        raise InvalidImage(f"the file is not an image Pillow can read; attach a {ACCEPTED} image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InvalidImage):
            raise
        raise InvalidImage(f"the image could not be decoded ({exc}); re-export it as {ACCEPTED}") from None
    return ImageInfo(fmt, contract.IMAGE_FORMATS[fmt], width, height, len(data))


def load_decoders() -> None:
    """Encode and decode a tiny picture in each accepted format, once, at start.

    Pillow imports its format plugins at the first open (JPEG and PNG ~5 ms; WebP only through
    ``Image.init``, which imports every plugin, ~40 ms; measured) and each codec sets itself up at
    its first use. Paid in the first burst, on the decode threads, that time held the GIL
    while the event loop still had acknowledgements to send.
    """
    for fmt in contract.IMAGE_FORMATS:
        out = io.BytesIO()
        Image.new("RGB", (8, 8)).save(out, fmt)
        with Image.open(io.BytesIO(out.getvalue()), formats=[fmt]) as img:
            img.load()


def _too_many_pixels_message(width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}x{height})" if width and height else ""
    return (
        f"the image has too many pixels{size}; the limit is {contract.MAX_IMAGE_PIXELS / 1e6:.0f} "
        "megapixels. Resize it (e.g. to 2048 px on the long side)."
    )


def _check_dimensions(width: int, height: int) -> None:
    if width * height > contract.MAX_IMAGE_PIXELS:
        raise InvalidImage(_too_many_pixels_message(width, height))
    if min(width, height) < contract.MIN_IMAGE_SIDE:
        raise InvalidImage(
            f"the image is {width}x{height}; each side must be at least {contract.MIN_IMAGE_SIDE} px"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > contract.MAX_IMAGE_ASPECT:
        raise InvalidImage(
            f"the image is {width}x{height} ({ratio:.1f}:1); the longest side may be at most "
            f"{contract.MAX_IMAGE_ASPECT:g} times the shortest. Crop it closer to 16:9, 9:16 or 1:1."
        )
