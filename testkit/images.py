"""Test pictures made on the spot: detailed enough that motion shows in the frames."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def picture(width: int = 320, height: int = 240, fmt: str = "PNG") -> bytes:
    img = Image.new("RGB", (width, height), (30, 40, 60))
    draw = ImageDraw.Draw(img)
    step = max(8, min(width, height) // 12)
    for x in range(0, width, step):
        for y in range(0, height, step):
            if (x // step + y // step) % 2:
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=(220, (x * 3) % 255, (y * 5) % 255))
    draw.ellipse([width // 4, height // 4, 3 * width // 4, 3 * height // 4], outline=(255, 255, 0), width=4)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
