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

from bot.i18n import Fixed, Text, TextError, say
from shared import contract


class InvalidImage(TextError, ValueError):
    """The bytes are not an image the API takes; the message says what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # Pillow's name: JPEG, PNG, WEBP
    mime: str
    width: int
    height: int
    size: int  # bytes


def _mib(n: int) -> Fixed:
    return Fixed(n / (1024 * 1024))


ACCEPTED = "JPEG, PNG or WebP"


def check_image_size(size: int) -> None:
    """The byte-size check alone, for callers that know the size before reading the bytes."""
    if size > contract.MAX_IMAGE_BYTES:
        raise InvalidImage(
            say(
                "the image is %(size)s MiB; the limit is %(limit)s MiB. "
                "Export it smaller (e.g. as JPEG at 2048 px on the long side).",
                size=_mib(size),
                limit=_mib(contract.MAX_IMAGE_BYTES),
            )
        )
    if size == 0:
        raise InvalidImage(say("the file is empty; attach a %(formats)s image", formats=ACCEPTED))


def validate_image(data: bytes, declared_type: str | None = None) -> ImageInfo:
    """Decode ``data`` fully and check it against the API's limits, or raise InvalidImage."""
    check_image_size(len(data))
    if declared_type is not None:
        declared = declared_type.split(";")[0].strip().lower()
        if declared and declared not in contract.IMAGE_FORMATS.values():
            raise InvalidImage(
                say(
                    "the file is declared as %(type)s; attach a %(formats)s image",
                    type=repr(declared),
                    formats=ACCEPTED,
                )
            )
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its limit, raises) on decompression bombs; both are refusals.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in contract.IMAGE_FORMATS:
                    raise InvalidImage(
                        say(
                            "the file is a %(format)s image; attach a %(formats)s image",
                            format=fmt or "?",
                            formats=ACCEPTED,
                        )
                    )
                _check_dimensions(width, height)
                img.load()  # the real decode: a truncated or corrupt file fails here
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InvalidImage(_too_many_pixels_message()) from None
    except UnidentifiedImageError:
        raise InvalidImage(
            say("the file is not an image Pillow can read; attach a %(formats)s image", formats=ACCEPTED)
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InvalidImage):
            raise
        raise InvalidImage(
            say(
                "the image could not be decoded (%(error)s); re-export it as %(formats)s",
                error=str(exc),
                formats=ACCEPTED,
            )
        ) from None
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


def _too_many_pixels_message(width: int | None = None, height: int | None = None) -> Text:
    limit = round(contract.MAX_IMAGE_PIXELS / 1e6)
    if width and height:
        return say(
            "the image has too many pixels (%(width)sx%(height)s); the limit is %(limit)s megapixels. "
            "Resize it (e.g. to 2048 px on the long side).",
            width=str(width),
            height=str(height),
            limit=limit,
        )
    return say(
        "the image has too many pixels; the limit is %(limit)s megapixels. "
        "Resize it (e.g. to 2048 px on the long side).",
        limit=limit,
    )


def _check_dimensions(width: int, height: int) -> None:
    if width * height > contract.MAX_IMAGE_PIXELS:
        raise InvalidImage(_too_many_pixels_message(width, height))
    if min(width, height) < contract.MIN_IMAGE_SIDE:
        raise InvalidImage(
            say(
                "the image is %(width)sx%(height)s; each side must be at least %(min)s px",
                width=str(width),
                height=str(height),
                min=contract.MIN_IMAGE_SIDE,
            )
        )
    ratio = max(width, height) / min(width, height)
    if ratio > contract.MAX_IMAGE_ASPECT:
        raise InvalidImage(
            say(
                "the image is %(width)sx%(height)s (%(ratio)s:1); the longest side may be at most "
                "%(max)s times the shortest. Crop it closer to 16:9, 9:16 or 1:1.",
                width=str(width),
                height=str(height),
                ratio=round(ratio, 1),
                max=contract.MAX_IMAGE_ASPECT,
            )
        )
