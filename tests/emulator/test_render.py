"""The renderer alone: sizes, frame count, duration, and motion that grows with intensity."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageStat

from emulator.render import RenderCache, RenderOptions, cover_crop, output_size, render_video

from .conftest import picture


@pytest.mark.parametrize(
    ("aspect", "short", "size"),
    [("16:9", 480, (854, 480)), ("9:16", 480, (480, 854)), ("1:1", 480, (480, 480)), ("16:9", 96, (170, 96))],
)
def test_output_size(aspect: str, short: int, size: tuple[int, int]) -> None:
    assert output_size(aspect, short) == size


def test_cover_crop_keeps_the_centre_at_the_target_ratio() -> None:
    img = Image.new("RGB", (400, 100))
    assert cover_crop(img, 16, 9).size == (178, 100)
    assert cover_crop(Image.new("RGB", (100, 400)), 1, 1).size == (100, 100)


def first_and_last(path: Path) -> tuple[Image.Image, Image.Image, int, float]:
    with av.open(str(path)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]  # type: ignore[no-untyped-call]
        assert container.duration is not None
        duration = container.duration / av.time_base
    return frames[0], frames[-1], len(frames), duration


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_motion_high_moves_more_than_low(tmp_path: Path) -> None:
    img = Image.open(io.BytesIO(picture(640, 360)))
    diffs = {}
    for motion in ("low", "medium", "high"):
        out = tmp_path / f"{motion}.mp4"
        info = render_video(
            img, duration=5, aspect_ratio="16:9", motion=motion, fps=8, short_side=144, crf=20, out_path=out
        )
        first, last, count, duration = first_and_last(out)
        assert (info.width, info.height, info.frames) == (256, 144, 40) == (*first.size, count)
        assert abs(duration - 5) <= 1 / 8
        diffs[motion] = mean_abs_diff(first, last)
    assert diffs["low"] < diffs["medium"] < diffs["high"]
    assert diffs["high"] > 2 * diffs["low"]


def test_render_leaves_no_partial_file(tmp_path: Path) -> None:
    img = Image.open(io.BytesIO(picture()))
    out = tmp_path / "sub" / "v.mp4"
    render_video(
        img, duration=5, aspect_ratio="1:1", motion="low", fps=4, short_side=64, crf=30, out_path=out
    )
    assert [p.name for p in out.parent.iterdir()] == ["v.mp4"]
    with pytest.raises(ValueError, match="motion"):
        render_video(
            img, duration=5, aspect_ratio="1:1", motion="x", fps=4, short_side=64, crf=30, out_path=out
        )


async def test_the_render_cache_keeps_its_byte_bound_least_recently_used_out_first(tmp_path: Path) -> None:
    options = RenderOptions(duration=5, aspect_ratio="1:1", motion="low", fps=4, short_side=64, crf=35)
    images = {name: Image.open(io.BytesIO(picture(seed=seed))) for seed, name in enumerate("abc")}
    for folder in ("probe", "renders"):
        (tmp_path / folder).mkdir()
    size = (
        (await RenderCache(tmp_path / "probe", 1).render(images["a"], "a" * 64, options, tmp_path / "a.mp4"))
        .path.stat()
        .st_size
    )
    cache = RenderCache(tmp_path / "renders", workers=1, max_bytes=int(2.5 * size))  # room for two

    async def job(name: str, n: int) -> bool:
        result = await cache.render(images[name], name * 64, options, tmp_path / f"job{n}.mp4")
        return result.cached

    assert [await job("a", 1), await job("b", 2), await job("a", 3), await job("c", 4)] == [
        False,
        False,
        True,
        False,
    ]
    assert cache.evictions == 1 and cache.bytes <= 2.5 * size  # b went: a was used more recently
    assert [await job("a", 5), await job("b", 6)] == [True, False]  # b is rendered again
    assert len(list((tmp_path / "renders").iterdir())) == 2  # evicted files are deleted
    for n in range(1, 7):  # every job's video survives the eviction of its render
        assert first_and_last(tmp_path / f"job{n}.mp4")[2] == 20
