"""Shared fixtures: a real emulator on loopback, a store in a temp dir, test pictures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.emulator.config import AccountConfig, EmulatorConfig
from bot.emulator.server import Emulator
from bot.store import Store

PRO_KEY = "test-pro-key-0123456789"
FREE_KEY = "test-free-key-0123456789"
WEBHOOK_SECRET = "test-webhook-secret"


def emulator_config(**overrides: object) -> EmulatorConfig:
    """A fast emulator: scaled time, tiny videos. Tests override what they exercise."""
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "accounts": [
            AccountConfig(
                key=PRO_KEY, plan="pro", credits=100_000, webhook_secret=WEBHOOK_SECRET, label="pro"
            ),
            AccountConfig(
                key=FREE_KEY, plan="free", credits=1_000, webhook_secret=WEBHOOK_SECRET, label="free"
            ),
        ],
        "time_scale": 0.01,
        "fps": 8,
        "video_height": 96,
    }
    values.update(overrides)
    return EmulatorConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(emulator_config()) as emu:
        yield emu


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "jobs.db")
    yield s
    await s.close()
