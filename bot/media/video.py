"""Videos out: probe an MP4 and, when it is over an upload limit, re-encode it to fit.

Discord caps uploads per file (10 MiB by default, less or more per interaction). A finished
video over the limit is re-encoded smaller with PyAV (libx264, average-bitrate rate control
sized from the byte budget); only when it cannot fit at acceptable quality does the caller
post a link instead (``fit_to_size`` returns None).

Everything here is synchronous CPU work on bytes in memory, with no shared state: callers run
it in a thread (``asyncio.to_thread``) and may run several at once.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

# Share of the byte budget kept back for the MP4 container (moov index, x264's SEI, the
# encoder's rate-control error); the rest is the video bitrate.
CONTAINER_MARGIN = 0.06
CONTAINER_FIXED_BYTES = 2048
CONTAINER_BYTES_PER_FRAME = 16  # sample size, timing and chunk entries in the moov index

# Below this many bits per pixel per frame H.264 is a smear, not a video: better a link.
MIN_BITS_PER_PIXEL = 0.02

RESOLUTION_STEP = 0.75  # each retry shrinks both sides by this much
MAX_ATTEMPTS = 4
X264_PRESET = "veryfast"  # a few seconds of CPU per clip; slower presets buy ~10% size


class InvalidVideo(ValueError):
    """The bytes are not a decodable video, or hold no video stream."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    width: int
    height: int
    duration: float  # seconds
    frames: int
    fps: float
    codec: str  # FFmpeg's decoder name: h264, hevc, vp9...
    size: int  # bytes


def probe(data: bytes) -> VideoInfo:
    """Read ``data``'s first video stream (headers, one decoded frame, packet count if the
    header lacks it) or raise InvalidVideo. Still images are not videos."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidVideo("the file has no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            # Decode one frame: headers alone do not prove the payload is a video we can read.
            if next(container.decode(stream), None) is None:
                raise InvalidVideo("the video stream has no decodable frames")
            frames = stream.frames
            if frames <= 0:  # not in the header (e.g. Matroska): count packets, no decoding
                container.seek(0)
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            if duration <= 0:  # FFmpeg opens a PNG or JPEG as a one-frame stream of no length
                raise InvalidVideo(f"the file is a still {ctx.name} image, not a video")
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else (frames / duration if duration > 0 else 0.0)
            return VideoInfo(ctx.width, ctx.height, duration, frames, fps, ctx.name, len(data))
    except av.error.FFmpegError as exc:
        raise InvalidVideo(f"not a readable video ({exc.strerror or exc})") from None


def last_frame(data: bytes) -> bytes:
    """The video's last frame as a PNG (to animate on from where it ended), or InvalidVideo.

    Decoded to the end: MP4 seeking lands on keyframes, and the last frame is rarely one."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidVideo("the file has no video stream")
            last = None
            for frame in container.decode(container.streams.video[0]):
                last = frame
            if last is None:
                raise InvalidVideo("the video stream has no decodable frames")
            out = io.BytesIO()
            last.to_image().save(out, format="PNG")  # type: ignore[no-untyped-call]
            return out.getvalue()
    except av.error.FFmpegError as exc:
        raise InvalidVideo(f"not a readable video ({exc.strerror or exc})") from None


def fit_to_size(data: bytes, max_bytes: int, *, min_short_side: int = 240) -> bytes | None:
    """Return ``data`` if it is at most ``max_bytes``, else an H.264 MP4 re-encode that is, or
    None when it cannot fit at acceptable quality (then post a link instead).

    The re-encode keeps the frame timing (fps, duration) and aspect ratio; it is libx264,
    yuv420p, ``+faststart``. Only the first video stream is kept: any audio is dropped (the
    bot's videos have none). Attempts: the source resolution at the bitrate the budget allows,
    then each retry shrinks both sides by RESOLUTION_STEP (never below ``min_short_side`` on
    the short side, or the source's if smaller) and corrects the bitrate by how far the last
    attempt overshot; MAX_ATTEMPTS in all. Raises InvalidVideo if ``data`` is not a video.
    """
    if len(data) <= max_bytes:
        return data
    info = probe(data)
    payload = max_bytes * (1 - CONTAINER_MARGIN) - CONTAINER_FIXED_BYTES
    payload -= CONTAINER_BYTES_PER_FRAME * info.frames
    bitrate = payload * 8 / info.duration
    short = min(info.width, info.height)
    floor = min(min_short_side, short)
    fps = info.fps or info.frames / info.duration
    scale = 1.0
    for _ in range(MAX_ATTEMPTS):
        width, height = _scaled(info.width, info.height, max(scale, floor / short))
        # The smallest frame gives the most bits per pixel: if even that is too few, give up.
        floor_w, floor_h = _scaled(info.width, info.height, floor / short)
        if bitrate < MIN_BITS_PER_PIXEL * floor_w * floor_h * fps:
            return None
        out = _encode(data, width, height, round(bitrate))
        if len(out) <= max_bytes:
            return out
        # x264's average drifts on short clips, and hits a floor (max quantizer) when starved:
        # ask for less by the overshoot, and spread it over fewer pixels.
        bitrate *= max_bytes / len(out) * 0.95
        scale *= RESOLUTION_STEP
    return None


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    """Both sides times ``scale``, rounded to even (yuv420p needs it), at least 2."""
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _encode(data: bytes, width: int, height: int, bitrate: int) -> bytes:
    """Decode ``data``'s first video stream and encode it at ``width``x``height`` and ~``bitrate``
    bit/s, keeping every frame's timestamp."""
    # +faststart rewrites the file after the fact by reopening it by name: a temp file, not BytesIO.
    with tempfile.TemporaryDirectory(prefix="fit-") as tmp:
        path = Path(tmp) / "out.mp4"
        _encode_to(data, path, width, height, bitrate)
        return path.read_bytes()


def _encode_to(data: bytes, path: Path, width: int, height: int, bitrate: int) -> None:
    """The re-encode proper (see ``_encode``), written to ``path``."""
    with (
        av.open(io.BytesIO(data), mode="r") as src,
        av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as dst,
    ):
        in_stream = src.streams.video[0]
        in_stream.thread_type = "AUTO"
        rate = in_stream.average_rate or in_stream.guessed_rate or Fraction(24)
        out_stream = dst.add_stream(
            "libx264",
            rate=rate,
            options={
                "preset": X264_PRESET,
                # One-pass ABR toward ``bitrate``. On a clip of a few seconds ABR alone overshoots
                # by 5-20%; a VBV capped at the average (a 1 s buffer, starting half full) holds
                # the whole clip to about its budget while still letting keyframes borrow bits.
                "maxrate": str(bitrate),
                "bufsize": str(bitrate),
                "x264-params": "vbv-init=0.5",
            },
        )
        out_stream.width = width
        out_stream.height = height
        out_stream.pix_fmt = "yuv420p"
        out_stream.bit_rate = bitrate
        time_base = in_stream.time_base or Fraction(1, 90_000)
        out_stream.codec_context.time_base = time_base
        first_pts: int | None = None
        for index, frame in enumerate(src.decode(in_stream)):
            picture = frame.reformat(width=width, height=height, format="yuv420p")
            if frame.pts is None:  # no timestamps: assume a constant rate
                picture.pts = round(index / rate / time_base)
            else:
                first_pts = frame.pts if first_pts is None else first_pts
                picture.pts = frame.pts - first_pts  # the output starts at 0
            picture.time_base = time_base
            dst.mux(out_stream.encode(picture))
        dst.mux(out_stream.encode(None))
