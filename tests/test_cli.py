"""`python -m bot animate` and `check`, run as a user would: a subprocess on a fresh database."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from bot.jobs import JobState
from bot.store import Store
from testkit.images import picture

ROOT = Path(__file__).resolve().parent.parent


def run_bot(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=env["WORKDIR"], env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no API key (so the built-in emulator), a fresh database."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DOITONG_", "DISCORD_", "PUBLIC_WEBHOOK"))
    }
    clean.update(
        WORKDIR=str(tmp_path),
        DATABASE_PATH=str(tmp_path / "bot.db"),
        EMULATOR_TIME_SCALE="0.02",
        PYTHONPATH=str(ROOT),
    )
    return clean


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "harbour.png"
    path.write_bytes(picture(480, 360))
    return path


def jobs_in(db: Path) -> list[tuple[JobState, str | None]]:
    async def read() -> list[tuple[JobState, str | None]]:
        store = await Store.open(db)
        try:
            return [(j.state, j.error) for j in await store.jobs_in_states(JobState)]
        finally:
            await store.close()

    return asyncio.run(read()) if db.exists() else []


def probe(path: Path) -> tuple[float, int, int, list[np.ndarray]]:
    """Duration in seconds, width, height and the decoded frames (grey) of an MP4."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(stream)]
        fps = float(stream.average_rate)
        return len(frames) / fps, stream.width, stream.height, frames


def motion_energy(frames: list[np.ndarray]) -> float:
    """Mean absolute change between consecutive frames: how much the picture moves."""
    return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(frames)]))


def test_animate_writes_the_asked_video(env: dict[str, str], image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "clip.mp4"
    result = run_bot("animate", str(image), "--prompt", "boats bob in the harbour", "--duration", "10",
                     "--aspect-ratio", "9:16", "--motion", "medium", "--out", str(out), env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert "built-in emulator" in result.stderr and "not a model" in result.stderr
    duration, width, height, frames = probe(out)
    fps = len(frames) / duration
    assert abs(duration - 10) <= 1 / fps
    assert abs(width / height - 9 / 16) < 0.01
    assert jobs_in(tmp_path / "bot.db") == [(JobState.DELIVERED, None)]


def test_high_motion_moves_more_than_low(env: dict[str, str], image: Path, tmp_path: Path) -> None:
    energy = {}
    for motion in ("low", "high"):
        out = tmp_path / f"{motion}.mp4"
        result = run_bot("animate", str(image), "--prompt", "drift", "--motion", motion,
                         "--aspect-ratio", "1:1", "--out", str(out), env=env)  # fmt: skip
        assert result.returncode == 0, result.stderr
        duration, width, height, frames = probe(out)
        assert abs(duration - 5) <= duration / len(frames)
        assert width == height
        energy[motion] = motion_energy(frames)
    assert energy["high"] > 1.5 * energy["low"] > 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"just some text, not a picture"), "not an image"),
        (lambda p: p.write_bytes(picture(100, 100, "GIF")), "GIF image"),
        (lambda p: p.write_bytes(picture(20, 20)), "at least 64 px"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_bad_image_is_one_line_and_no_job(env: dict[str, str], tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "input.png"
    make(path)
    result = run_bot("animate", str(path), "--prompt", "x", env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0  # one line
    assert "Traceback" not in result.stderr
    assert jobs_in(tmp_path / "bot.db") == []


def test_bad_options_change_nothing(env: dict[str, str], image: Path, tmp_path: Path) -> None:
    result = run_bot("animate", str(image), "--prompt", "x", "--duration", "7", env=env)
    assert result.returncode == 2 and "invalid choice: 7" in result.stderr
    result = run_bot("animate", str(image), "--prompt", "y" * 1001, env=env)
    assert result.returncode == 2 and "limit is 1,000" in result.stderr
    assert jobs_in(tmp_path / "bot.db") == []


@pytest.fixture
def emulator_process(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """`python -m bot emulator` as its own process, the way an operator runs it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "emulator", "--port", str(port), "--api-key", "right-key",
         "--plan", "pro", "--credits", "100", "--webhook-secret", "s", "--time-scale", "0.02",
         "--video-height", "96", "--fps", "8"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
        assert "right-key" not in output  # the banner and logs never show the key
        assert "stand-in" in output


def test_refused_key_fails_the_job_with_the_reason(
    env: dict[str, str], image: Path, tmp_path: Path, emulator_process: str
) -> None:
    env.update(DOITONG_API_URL=emulator_process, DOITONG_API_KEY="wrong-key")
    result = run_bot("animate", str(image), "--prompt", "x", env=env)
    assert result.returncode == 1
    assert "refused the key" in result.stderr and "wrong-key" not in result.stderr
    assert jobs_in(tmp_path / "bot.db") == [
        (JobState.FAILED, "the API refused the key (check DOITONG_API_KEY)")
    ]


def test_credits_short_says_the_numbers(
    env: dict[str, str], image: Path, tmp_path: Path, emulator_process: str
) -> None:
    env.update(DOITONG_API_URL=emulator_process, DOITONG_API_KEY="right-key", DOITONG_PLAN="pro")
    result = run_bot("animate", str(image), "--prompt", "x", "--duration", "10", "--motion", "high", env=env)
    assert result.returncode == 1
    assert "needs 200, the account has 100" in result.stderr
    assert [s for s, _ in jobs_in(tmp_path / "bot.db")] == [JobState.FAILED]


def test_against_a_separate_emulator_process(
    env: dict[str, str], image: Path, tmp_path: Path, emulator_process: str
) -> None:
    env.update(DOITONG_API_URL=emulator_process, DOITONG_API_KEY="right-key", DOITONG_PLAN="pro",
               DOITONG_TRANSPORT="rest")  # fmt: skip
    out = tmp_path / "rest.mp4"
    result = run_bot("animate", str(image), "--prompt", "x", "--version", "gen-2", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "10 credits" in result.stdout
    assert probe(out)[1:3] == (170, 96)


def test_unreachable_api(env: dict[str, str], image: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.update(DOITONG_API_URL=f"http://127.0.0.1:{port}", DOITONG_API_KEY="k", DOITONG_MAX_RETRIES="1")
    result = run_bot("animate", str(image), "--prompt", "x", env=env)
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr
    assert [s for s, _ in jobs_in(tmp_path / "bot.db")] == [JobState.FAILED]


def test_check_reaches_the_built_in_emulator(env: dict[str, str]) -> None:
    result = run_bot("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "built-in emulator" in result.stdout
    assert "of 10 left this minute" in result.stdout  # the Free plan's budget, read from the headers


def test_check_names_bad_settings_without_traceback(env: dict[str, str]) -> None:
    env.update(DOITONG_PLAN="platinum", WEBHOOK_PORT="http", DOITONG_API_KEY="super-secret-value")
    result = run_bot("check", env=env)
    assert result.returncode == 2
    assert "DOITONG_PLAN" in result.stderr and "WEBHOOK_PORT" in result.stderr
    assert "Traceback" not in result.stderr and "super-secret-value" not in result.stderr
