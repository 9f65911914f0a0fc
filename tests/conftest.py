"""Shared fixtures: a real emulator on loopback, a store in a temp dir, test pictures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.store import Store
from emulator.server import Emulator
from relay.server import RelayServer
from testkit.accounts import emulator_config
from testkit.relay import relay_config

MakeRelay = Callable[..., Awaitable[RelayServer]]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(emulator_config()) as emu:
        yield emu


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "jobs.db")
    yield s
    await s.close()


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[MakeRelay]:
    """Start relays (stopped at the end); later ones may reuse the port and the database."""
    started: list[RelayServer] = []

    async def make(**overrides: Any) -> RelayServer:
        relay = RelayServer(relay_config(tmp_path, **overrides))
        await relay.start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        await relay.stop()


@pytest.fixture
async def relay(make_relay: MakeRelay) -> RelayServer:
    return await make_relay()
