"""Kept pictures: bytes back unchanged on both engines, bounded by total size and by age."""

from __future__ import annotations

import time

from bot.store import Picture, Store
from bot.store import pictures as kept

KIB = 1024


def picture(n: int, size: int = 4 * KIB) -> Picture:
    return Picture(f"{n:064x}", bytes([n % 256]) * size + b"\x00\xff", "image/png")


async def test_a_kept_picture_comes_back_byte_for_byte(store: Store) -> None:
    await store.keep_picture(picture(1), max_bytes=1 << 20, max_age=3600)
    assert await store.picture(picture(1).sha256) == picture(1)
    assert await store.picture("0" * 64) is None


async def test_the_least_recently_used_go_first_when_over_the_size(store: Store) -> None:
    bound = 10 * KIB  # room for two pictures of 4 KiB
    for n in (1, 2):
        await store.keep_picture(picture(n), max_bytes=bound, max_age=3600)
    assert await store.picture(picture(1).sha256) is not None  # 1 used again: 2 is the oldest now
    await store.keep_picture(picture(3), max_bytes=bound, max_age=3600)
    assert [await store.picture(picture(n).sha256) is not None for n in (1, 2, 3)] == [True, False, True]


async def test_pictures_older_than_the_age_go(store: Store) -> None:
    now = time.time()
    await store.atomic(lambda tx: kept.keep(tx, picture(1), now - 7200, max_bytes=1 << 20, max_age=3600))
    await store.keep_picture(picture(2), max_bytes=1 << 20, max_age=3600)
    assert await store.picture(picture(1).sha256) is None
    assert await store.picture(picture(2).sha256) is not None
