"""The API accounts the tests and benchmarks use, and a fast emulator configured with them."""

from __future__ import annotations

from emulator.config import AccountConfig, EmulatorConfig

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
