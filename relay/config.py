"""The relay's settings: who may subscribe to which channel, and its limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CHANNEL_PATTERN = r"[A-Za-z0-9_-]{1,64}"
MIN_TOKEN_CHARS = 16  # a subscriber token is a password: refuse ones short enough to guess
DEFAULT_RETENTION_SECONDS = 7 * 86_400.0


@dataclass(frozen=True)
class RelayConfig:
    """One relay. ``tokens`` maps each subscriber's secret token to its channel (one token per
    channel); ``secrets`` optionally maps a channel to the account's webhook secret so the relay
    can drop forged posts early (the bot verifies every event again, end to end)."""

    db_path: Path | str
    tokens: Mapping[str, str]
    secrets: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8080
    retention_seconds: float = DEFAULT_RETENTION_SECONDS  # an unacknowledged event expires after this
    max_body: int = 64 * 1024  # a completion event is a few hundred bytes
    rate_per_minute: int = 600  # webhook posts per channel, token bucket (burst = one minute's worth)
    max_held: int = 100_000  # unacknowledged events per channel; beyond it posts get 503 (bounded disk)
    heartbeat_seconds: float = 15.0  # SSE comment sent on an idle stream
    purge_interval: float = 60.0  # seconds between expiry sweeps
    batch: int = 256  # events read from the database per write to a stream
    public_url: str | None = None  # how the API reaches the relay, for the banner only

    def __repr__(self) -> str:  # never show the tokens or the secrets
        return (
            f"RelayConfig(db_path={str(self.db_path)!r}, channels={sorted(set(self.tokens.values()))!r}, "
            f"host={self.host!r}, port={self.port})"
        )

    __str__ = __repr__

    @property
    def channels(self) -> list[str]:
        return sorted(set(self.tokens.values()))

    def validate(self) -> None:
        """ValueError naming the first problem; never quotes a token or a secret."""
        if not self.tokens:
            raise ValueError("no subscriber: give at least one token and its channel")
        seen: set[str] = set()
        for token, channel in self.tokens.items():
            if not isinstance(channel, str) or not re.fullmatch(CHANNEL_PATTERN, channel):
                raise ValueError(f"channel {channel!r}: use 1-64 letters, digits, '-' or '_'")
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or token != token.strip():
                raise ValueError(
                    f"the token of channel {channel!r} must be at least {MIN_TOKEN_CHARS} characters "
                    "without surrounding spaces"
                )
            if channel in seen:
                raise ValueError(
                    f"channel {channel!r} has more than one token; give each bot its own channel"
                )
            seen.add(channel)
        for channel, secret in self.secrets.items():
            if channel not in seen:
                raise ValueError(f"a webhook secret is given for channel {channel!r}, which has no token")
            if not secret:
                raise ValueError(f"the webhook secret of channel {channel!r} is empty")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.retention_seconds <= 0:
            raise ValueError("retention must be > 0")
        if self.max_body <= 0:
            raise ValueError("max body must be > 0")
        if self.rate_per_minute <= 0:
            raise ValueError("rate per minute must be > 0")
        if self.heartbeat_seconds <= 0 or self.purge_interval <= 0:
            raise ValueError("heartbeat and purge interval must be > 0")
        if self.batch <= 0:
            raise ValueError("batch must be > 0")
        if self.max_held <= 0:
            raise ValueError("max held must be > 0")
