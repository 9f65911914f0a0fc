"""The emulator's "model": a Ken-Burns pan and zoom over the still image, encoded as a real
H.264 MP4 with PyAV.

``render_video`` is a pure function (image in, file out) usable on its own. ``RenderCache``
wraps it for the server: identical renders (same image bytes and options) are done once, at
most ``workers`` at a time, each in a worker thread, and the cache keeps at most ``max_bytes``
of them, dropping the least recently used first.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from shared import contract

# Zoom amplitude (final zoom factor minus one) per motion intensity; the pan is proportional,
# a share of the margin the zoom opens up.
MOTION_ZOOM: dict[str, float] = {"low": 0.06, "medium": 0.18, "high": 0.40}
PAN_SHARE = 0.8

# Pan directions (unit vectors), chosen by the seed: diagonals and the four sides.
_DIRECTIONS: tuple[tuple[float, float], ...] = tuple(
    (math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (45, 135, 225, 315, 0, 90, 180, 270)
)


class RenderCancelled(Exception):
    """The render was stopped through its ``cancel`` event."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    duration: int  # seconds
    frames: int


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def output_size(aspect_ratio: str, short_side: int) -> tuple[int, int]:
    """Frame size for an aspect ratio: the short side is ``short_side``, both sides even
    (yuv420p needs it). 16:9 at 480 gives 854x480."""
    num, den = contract.ASPECT_RATIO_FRACTIONS[aspect_ratio]
    short = _even(short_side)
    if num >= den:
        return _even(short * num / den), short
    return short, _even(short * den / num)


def cover_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """The largest centred region of ``image`` with the aspect ratio width:height."""
    src_w, src_h = image.size
    target = width / height
    if src_w / src_h > target:
        crop_w = max(1, round(src_h * target))
        left = (src_w - crop_w) // 2
        return image.crop((left, 0, left + crop_w, src_h))
    crop_h = max(1, round(src_w / target))
    top = (src_h - crop_h) // 2
    return image.crop((0, top, src_w, top + crop_h))


def ease(t: float) -> float:
    """Ease in and out (smoothstep) on [0, 1]."""
    t = min(1.0, max(0.0, t))
    return t * t * (3.0 - 2.0 * t)


def camera_box(
    progress: float, base_w: int, base_h: int, zoom: float, direction: tuple[float, float]
) -> tuple[float, float, float, float]:
    """The region of the base image shown at ``progress`` (0..1): zooming in by up to
    ``1 + zoom`` while drifting along ``direction``, always inside the base image."""
    e = ease(progress)
    scale = 1.0 + zoom * e
    crop_w, crop_h = base_w / scale, base_h / scale
    slack_x, slack_y = (base_w - crop_w) / 2, (base_h - crop_h) / 2
    cx = base_w / 2 + direction[0] * slack_x * PAN_SHARE
    cy = base_h / 2 + direction[1] * slack_y * PAN_SHARE
    return (cx - crop_w / 2, cy - crop_h / 2, cx + crop_w / 2, cy + crop_h / 2)


def render_video(
    image: Image.Image,
    *,
    duration: int,
    aspect_ratio: str,
    motion: str,
    fps: int,
    short_side: int,
    crf: int,
    out_path: Path,
    seed: int = 0,
    cancel: threading.Event | None = None,
) -> VideoInfo:
    """Render ``duration * fps`` frames of a pan-and-zoom over ``image`` to an H.264 MP4
    (libx264, yuv420p, preset veryfast) at ``out_path``. ``seed`` picks the pan direction;
    setting ``cancel`` (from another thread) stops the render with RenderCancelled.
    The file appears atomically (written aside, then renamed)."""
    if motion not in MOTION_ZOOM:
        raise ValueError(f"motion must be one of {', '.join(MOTION_ZOOM)}")
    if duration < 1 or fps < 1:
        raise ValueError("duration and fps must be >= 1")
    width, height = output_size(aspect_ratio, short_side)
    zoom = MOTION_ZOOM[motion]
    direction = _DIRECTIONS[seed % len(_DIRECTIONS)]
    # Scale once so that at the widest zoom one source pixel is one output pixel.
    base_w, base_h = round(width * (1 + zoom)), round(height * (1 + zoom))
    base = cover_crop(image.convert("RGB"), width, height).resize((base_w, base_h), Image.Resampling.LANCZOS)
    frames = duration * fps
    time_base = Fraction(1, fps)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.part")
    try:
        with av.open(
            str(tmp_path), mode="w", format="mp4", container_options={"movflags": "+faststart"}
        ) as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = time_base
            for index in range(frames):
                if cancel is not None and cancel.is_set():
                    raise RenderCancelled(str(out_path))
                progress = index / (frames - 1) if frames > 1 else 0.0
                box = camera_box(progress, base_w, base_h, zoom, direction)
                picture = base.resize((width, height), Image.Resampling.BILINEAR, box=box)
                frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
                frame.pts = index
                frame.time_base = time_base
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return VideoInfo(width=width, height=height, duration=duration, frames=frames)


@dataclass(frozen=True, slots=True)
class RenderOptions:
    duration: int
    aspect_ratio: str
    motion: str
    fps: int
    short_side: int
    crf: int


@dataclass(frozen=True, slots=True)
class RenderResult:
    path: Path
    info: VideoInfo
    cached: bool


RenderKey = tuple[str, RenderOptions]


class RenderCache:
    """Renders into ``directory``, once per (image hash, options), ``workers`` at a time; keeps
    at most ``max_bytes`` of finished renders (None: no bound), least recently used out first.
    The newest render is always kept, even alone above the bound."""

    def __init__(self, directory: Path, workers: int, max_bytes: int | None = None) -> None:
        self._dir = directory
        self._sem = asyncio.Semaphore(workers)
        self.max_bytes = max_bytes
        self._done: OrderedDict[RenderKey, RenderResult] = OrderedDict()  # least recently used first
        self._sizes: dict[RenderKey, int] = {}
        self.bytes = 0  # of the renders kept
        self._pending: dict[RenderKey, asyncio.Future[RenderResult]] = {}
        self.renders = 0
        self.hits = 0
        self.evictions = 0
        self._cancel = threading.Event()
        self._threads: set[asyncio.Future[VideoInfo]] = set()

    async def render(
        self, image: Image.Image, image_sha256: str, options: RenderOptions, out: Path
    ) -> RenderResult:
        """The video for ``image`` with ``options``, also at ``out`` (a link to the cached file,
        made before anything can evict it); ``result.path`` is ``out``."""
        result = await self._render(image, image_sha256, options)
        # Synchronous, with no await since the render was found or made: an eviction (which
        # runs on this loop) cannot delete the file between finding it and linking it.
        _link_or_copy(result.path, out)
        return RenderResult(out, result.info, result.cached)

    async def _render(self, image: Image.Image, image_sha256: str, options: RenderOptions) -> RenderResult:
        key = (image_sha256, options)
        done = self._done.get(key)
        if done is not None and done.path.exists():
            self.hits += 1
            self._done.move_to_end(key)
            return RenderResult(done.path, done.info, cached=True)
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            result = await asyncio.shield(pending)
            if result.path.exists():
                return RenderResult(result.path, result.info, cached=True)
            return await self._render(image, image_sha256, options)  # evicted meanwhile: again
        future: asyncio.Future[RenderResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            async with self._sem:
                name = (
                    f"render-{image_sha256[:16]}-{abs(hash(options)) % 10**8:08d}-{uuid.uuid4().hex[:8]}.mp4"
                )
                path = self._dir / name
                call = functools.partial(
                    render_video,
                    image,
                    duration=options.duration,
                    aspect_ratio=options.aspect_ratio,
                    motion=options.motion,
                    fps=options.fps,
                    short_side=options.short_side,
                    crf=options.crf,
                    out_path=path,
                    seed=int(image_sha256[:8], 16),
                    cancel=self._cancel,
                )
                # Shielded: a cancelled job stops waiting, but the thread is tracked until it
                # ends, so close() can wait for it before the directory goes away.
                thread = asyncio.get_running_loop().run_in_executor(None, call)
                self._threads.add(thread)
                thread.add_done_callback(self._forget)
                info = await asyncio.shield(thread)
            self.renders += 1
            result = RenderResult(path, info, cached=False)
            self._keep(key, result)
            future.set_result(result)
            return result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters, if any, re-raise it themselves
            raise
        finally:
            self._pending.pop(key, None)

    def _keep(self, key: RenderKey, result: RenderResult) -> None:
        old = self._done.pop(key, None)  # a file deleted from under the cache, made again
        if old is not None:
            self.bytes -= self._sizes.pop(key)
        self._done[key] = result
        self._sizes[key] = result.path.stat().st_size
        self.bytes += self._sizes[key]
        while self.max_bytes is not None and self.bytes > self.max_bytes and len(self._done) > 1:
            evicted, gone = self._done.popitem(last=False)
            self.bytes -= self._sizes.pop(evicted)
            gone.path.unlink(missing_ok=True)  # jobs' outputs are links of their own: they stay
            self.evictions += 1

    def _forget(self, thread: asyncio.Future[VideoInfo]) -> None:
        self._threads.discard(thread)
        if not thread.cancelled():
            thread.exception()  # retrieved: whoever awaited it has seen it, or nobody is left

    async def close(self) -> None:
        """Stop renders in progress and wait until their threads have let go of the files."""
        self._cancel.set()
        if self._threads:
            await asyncio.gather(*list(self._threads), return_exceptions=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # same directory tree: a link, no bytes copied
    except OSError:
        shutil.copyfile(src, dst)
