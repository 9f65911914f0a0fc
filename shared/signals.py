"""Waiting for SIGINT / SIGTERM, for every long-running command (the bot, the emulator, the relay)."""

from __future__ import annotations

import asyncio
import contextlib
import signal


async def stop_requested() -> None:
    """Return once SIGINT or SIGTERM arrives; the handlers are removed again on the way out.

    Where the loop cannot install handlers (not the main thread, Windows) it waits for a
    cancel instead, which is how tests stop it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
