"""bot.media.video: probe MP4s and re-encode them under an upload limit.

The test videos are made here with PyAV: blocky random noise over a moving gradient, encoded at
high quality, so they are a few MiB and compress poorly (the hard case for hitting a size).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import av
import numpy as np
import pytest
from PIL import Image

from bot.media import video
from bot.media.video import InvalidVideo, VideoInfo, fit_to_size, probe

FPS = 24


def make_video(
    width: int, height: int, seconds: int, *, seed: int = 0, crf: int = 16, audio: bool = False
) -> bytes:
    """An H.264 MP4 of noisy moving frames (4x4-pixel noise blocks: a few MiB at crf 16)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": str(crf), "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48_000) if audio else None
        for index in range(seconds * FPS):
            noise = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
            noise = noise.repeat(4, axis=0).repeat(4, axis=1)
            gradient = ((xx + yy + index * 8) % 256).astype(np.uint8)[..., None]
            frame = av.VideoFrame.from_ndarray(noise // 2 + gradient // 2, format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            _add_tone(out, sound, seconds)
    return buf.getvalue()


def _add_tone(out: av.container.OutputContainer, sound: av.AudioStream, seconds: int) -> None:
    samples = np.sin(np.arange(48_000 * seconds) * 2 * np.pi * 440 / 48_000).astype(np.float32)
    for start in range(0, len(samples), 1024):
        chunk = samples[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = start
        out.mux(sound.encode(frame))
    out.mux(sound.encode(None))


@pytest.fixture(scope="module")
def landscape() -> bytes:
    return make_video(640, 360, 5, seed=1)


@pytest.fixture(scope="module")
def portrait() -> bytes:
    return make_video(360, 640, 3, seed=2)


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data), mode="r") as container:
        return len(list(container.decode(video=0)))


def assert_faithful(original: VideoInfo, result: bytes, max_bytes: int) -> VideoInfo:
    """The re-encode fits, decodes in full, keeps timing and shape, and is a faststart H.264."""
    assert len(result) <= max_bytes
    info = probe(result)
    assert info.codec == "h264"
    assert decoded_frames(result) == original.frames == info.frames
    assert info.fps == pytest.approx(original.fps)
    assert abs(info.duration - original.duration) <= 1 / original.fps
    assert info.width % 2 == 0 and info.height % 2 == 0
    ratio = (info.width / info.height) / (original.width / original.height)
    assert abs(ratio - 1) < 0.01
    assert result.index(b"moov") < result.index(b"mdat")  # +faststart: the index comes first
    return info


def test_probe_reports_the_stream(landscape: bytes, portrait: bytes) -> None:
    assert probe(landscape) == VideoInfo(640, 360, 5.0, 5 * FPS, 24.0, "h264", len(landscape))
    info = probe(portrait)
    assert (info.width, info.height, info.frames, info.fps, info.codec) == (360, 640, 3 * FPS, 24.0, "h264")
    assert info.duration == pytest.approx(3.0, abs=1 / FPS)
    assert len(landscape) > 2 * 1024 * 1024  # the test videos really are big


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buf, "PNG")
    return buf.getvalue()


def _audio_only() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        _add_tone(out, out.add_stream("aac", rate=48_000), 1)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make_bytes",
    [
        lambda: b"",
        lambda: b"definitely not a video " * 1000,
        _png,  # FFmpeg opens a still image as a one-frame video: still not one
        _audio_only,
        lambda: make_video(64, 64, 1)[:4000],  # the header, then nothing decodable
    ],
    ids=["empty", "text", "png", "audio-only", "truncated"],
)
def test_probe_refuses_what_is_not_a_video(make_bytes: Callable[[], bytes]) -> None:
    data = make_bytes()
    with pytest.raises(InvalidVideo):
        probe(data)
    with pytest.raises(InvalidVideo):
        fit_to_size(data, len(data) - 1)  # over the limit, so it must look, and refuse


def test_small_enough_is_returned_unchanged(landscape: bytes) -> None:
    assert fit_to_size(landscape, len(landscape)) is landscape
    assert fit_to_size(b"anything", 8) == b"anything"  # not even probed: nothing to do


def test_fits_into_40_percent(landscape: bytes) -> None:
    budget = int(len(landscape) * 0.4)
    result = fit_to_size(landscape, budget)
    assert result is not None
    assert_faithful(probe(landscape), result, budget)
    assert len(result) > budget * 0.8  # the budget is used, not thrown away


def test_portrait_stays_portrait(portrait: bytes) -> None:
    budget = int(len(portrait) * 0.25)
    result = fit_to_size(portrait, budget)
    assert result is not None
    info = assert_faithful(probe(portrait), result, budget)
    assert info.height > info.width


def test_impossible_budget_gives_none(landscape: bytes) -> None:
    assert fit_to_size(landscape, 5_000) is None  # 5 KB for 5 s: give up, post a link


def test_audio_is_dropped() -> None:
    data = make_video(320, 180, 2, seed=3, audio=True)
    with av.open(io.BytesIO(data)) as container:
        assert len(container.streams.audio) == 1
    result = fit_to_size(data, len(data) // 2)
    assert result is not None
    with av.open(io.BytesIO(result)) as container:
        assert len(container.streams.audio) == 0
        assert len(container.streams.video) == 1


class OversizedEncoder:
    """Stands in for the x264 pass: records each attempt and answers with ``sizes`` in turn."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, data: bytes, width: int, height: int, bitrate: int) -> bytes:
        self.calls.append((width, height, bitrate))
        return bytes(self.sizes[len(self.calls) - 1])


def test_ladder_steps_down_resolution_and_bitrate(monkeypatch: pytest.MonkeyPatch, landscape: bytes) -> None:
    budget = 1_000_000
    encoder = OversizedEncoder([budget * 2] * video.MAX_ATTEMPTS)
    monkeypatch.setattr(video, "_encode", encoder)
    assert fit_to_size(landscape, budget, min_short_side=240) is None
    assert len(encoder.calls) == video.MAX_ATTEMPTS
    first_width, first_height, first_bitrate = encoder.calls[0]
    assert (first_width, first_height) == (640, 360)  # first at the source resolution
    assert first_bitrate == pytest.approx(budget * 8 / 5, rel=0.1)  # the budget, less the margin
    assert first_bitrate < budget * 8 / 5
    assert [call[1] for call in encoder.calls] == [360, 270, 240, 240]  # x0.75, never below 240
    bitrates = [call[2] for call in encoder.calls]
    assert bitrates == sorted(bitrates, reverse=True) and len(set(bitrates)) == len(bitrates)


def test_ladder_returns_the_first_fit(monkeypatch: pytest.MonkeyPatch, landscape: bytes) -> None:
    budget = 1_000_000
    encoder = OversizedEncoder([budget + 1, budget])
    monkeypatch.setattr(video, "_encode", encoder)
    result = fit_to_size(landscape, budget)
    assert result is not None and len(result) == budget
    assert len(encoder.calls) == 2


def test_ladder_never_upscales_a_small_source(monkeypatch: pytest.MonkeyPatch, landscape: bytes) -> None:
    encoder = OversizedEncoder([2_000_000] * video.MAX_ATTEMPTS)
    monkeypatch.setattr(video, "_encode", encoder)
    assert fit_to_size(landscape, 1_000_000, min_short_side=720) is None
    assert {call[:2] for call in encoder.calls} == {(640, 360)}  # the source is below the floor


async def test_runs_concurrently_in_threads(portrait: bytes) -> None:
    """The way the bot calls it: in worker threads, several at once, sharing nothing."""
    budgets = [int(len(portrait) * 0.3), int(len(portrait) * 0.2)]
    results = await asyncio.gather(*(asyncio.to_thread(fit_to_size, portrait, b) for b in budgets))
    for result, budget in zip(results, budgets, strict=True):
        assert result is not None
        assert_faithful(probe(portrait), result, budget)


def test_the_last_frame_is_the_videos_final_picture_as_a_png() -> None:
    clip = make_video(96, 64, 1, seed=3)
    png = video.last_frame(clip)
    with av.open(io.BytesIO(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (96, 64)
        shown = np.asarray(image.convert("RGB"), dtype=np.int16)
    # Nearer the last frame than the one before it: the end, not a keyframe near it.
    last, before = (np.abs(shown - f.astype(np.int16)).mean() for f in (frames[-1], frames[-2]))
    assert last < 1.0 < before
    with pytest.raises(InvalidVideo):
        video.last_frame(b"not a video")
