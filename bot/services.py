"""The API as configured: the real one, or the built-in emulator when no key is set."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from bot.api.client import DoitongClient, RateLimit, RetryPolicy
from bot.config import Settings


@dataclass(frozen=True, slots=True)
class Api:
    client: DoitongClient
    emulated: bool


@contextlib.asynccontextmanager
async def open_api(
    settings: Settings,
    *,
    before_request: Callable[[], Awaitable[None]] | None = None,
    on_rate_limit: Callable[[RateLimit], None] | None = None,
) -> AsyncIterator[Api]:
    """The configured API, or the built-in emulator on loopback when no key is set."""
    retry = RetryPolicy(max_retries=settings.doitong_max_retries)
    if settings.doitong_api_key is not None:
        async with DoitongClient(
            settings.doitong_api_url,
            settings.doitong_api_key.reveal(),
            transport=settings.doitong_transport,
            timeout=settings.doitong_timeout,
            retry=retry,
            before_request=before_request,
            on_rate_limit=on_rate_limit,
        ) as client:
            yield Api(client, emulated=False)
        return
    # Imported here: only the no-key path needs the emulator (and its rendering stack).
    from emulator.config import AccountConfig, EmulatorConfig
    from emulator.server import Emulator

    key = secrets.token_urlsafe(24)  # lives only in this process
    account = AccountConfig(
        key=key,
        plan=settings.doitong_plan,
        credits=100_000,
        # The configured secret, so the bot's own receiver can verify the emulator's webhooks.
        webhook_secret=(
            settings.doitong_webhook_secret.reveal()
            if settings.doitong_webhook_secret
            else secrets.token_urlsafe(24)
        ),
        label="local",
    )
    config = EmulatorConfig(
        host="127.0.0.1", port=0, accounts=[account], time_scale=settings.emulator_time_scale
    )
    async with (
        Emulator(config) as emulator,
        DoitongClient(
            emulator.base_url,
            key,
            transport=settings.doitong_transport,
            timeout=settings.doitong_timeout,
            retry=retry,
            before_request=before_request,
            on_rate_limit=on_rate_limit,
        ) as client,
    ):
        yield Api(client, emulated=True)
