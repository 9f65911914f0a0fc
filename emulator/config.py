"""Settings of the emulator: the accounts it knows and how it behaves.

Plain dataclasses, no I/O. ``EmulatorConfig.validate()`` checks them once, at start-up, so a
typo in a keys file is reported before the server listens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import contract


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One API key of the emulated service.

    ``requests_per_minute``, ``concurrent_jobs`` and ``jobs_per_day`` override the plan's
    numbers from ``contract.PLANS`` (an enterprise plan is "custom"); None keeps the plan's.
    ``label`` names the account in ``/_emulator/state`` and logs, which never show the key.
    An empty label is replaced by ``account-N`` (N counts from 1 in the accounts list).
    """

    key: str
    plan: str = "pro"
    credits: int = 100_000
    webhook_secret: str = ""
    label: str = ""
    requests_per_minute: int | None = None
    concurrent_jobs: int | None = None
    jobs_per_day: int | None = None

    @property
    def limits(self) -> contract.Plan:
        """The plan's limits with this account's overrides applied."""
        base = contract.PLANS[self.plan]
        return contract.Plan(
            name=base.name,
            requests_per_minute=(
                base.requests_per_minute if self.requests_per_minute is None else self.requests_per_minute
            ),
            concurrent_jobs=base.concurrent_jobs if self.concurrent_jobs is None else self.concurrent_jobs,
            jobs_per_day=base.jobs_per_day if self.jobs_per_day is None else self.jobs_per_day,
        )

    @classmethod
    def from_dict(cls, raw: Any, index: int = 0) -> AccountConfig:
        """Build one account from a keys-file object; raises ValueError on a bad entry."""
        where = f"account #{index + 1}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        key = raw.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: 'key' must be a non-empty string")
        values: dict[str, Any] = {"key": key}
        for name in ("plan", "webhook_secret", "label"):
            if name in raw:
                if not isinstance(raw[name], str):
                    raise ValueError(f"{where}: '{name}' must be a string")
                values[name] = raw[name]
        for name in ("credits", "requests_per_minute", "concurrent_jobs", "jobs_per_day"):
            if name in raw:
                value = raw[name]
                nullable = name != "credits"
                if (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool)):
                    values[name] = value
                else:
                    raise ValueError(f"{where}: '{name}' must be an integer")
        return cls(**values)


@dataclass(slots=True)
class EmulatorConfig:
    """Everything the emulator needs. Times are in emulated seconds, multiplied by
    ``time_scale`` (0.01 makes a 15 s render take 0.15 s); ``slow_seconds`` and the
    ``slow:N`` fault are real seconds, since they exist to trip a client's real timeout."""

    host: str = "127.0.0.1"
    port: int = 8787
    accounts: list[AccountConfig] = field(default_factory=list)
    time_scale: float = 1.0
    public_url: str | None = None  # base of output URLs; None -> the address it listens on
    output_dir: Path | None = None  # None -> a temporary directory, deleted on stop
    fps: int = 24
    video_height: int = 480  # the short side of the video, in pixels
    crf: int = 23
    queue_seconds: float = 2.0
    processing_seconds: float = 15.0  # per 5 seconds of video
    render_workers: int = 2
    render_cache_bytes: int | None = 256 * 1024 * 1024  # finished renders kept; None: no bound
    webhook_attempts: int = 6
    webhook_timeout: float = 10.0  # real seconds per delivery attempt
    image_timeout: float = 10.0  # real seconds to download an input image
    # probabilistic faults, each a probability in [0, 1]
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    drop_webhook_rate: float = 0.0
    job_fail_rate: float = 0.0
    seed: int | None = None
    graphql_errors_200: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if not self.accounts:
            raise ValueError("at least one account (API key) is required")
        keys: set[str] = set()
        for i, acct in enumerate(self.accounts):
            where = f"account {acct.label or f'#{i + 1}'}"
            if not acct.key:
                raise ValueError(f"{where}: empty API key")
            if acct.key in keys:
                raise ValueError(f"{where}: duplicate API key")
            keys.add(acct.key)
            if acct.plan not in contract.PLANS:
                raise ValueError(f"{where}: plan must be one of {', '.join(contract.PLAN_NAMES)}")
            if acct.credits < 0:
                raise ValueError(f"{where}: credits must be >= 0")
            limits = acct.limits
            if limits.requests_per_minute < 1 or limits.concurrent_jobs < 1:
                raise ValueError(f"{where}: requests per minute and concurrent jobs must be >= 1")
            if limits.jobs_per_day is not None and limits.jobs_per_day < 1:
                raise ValueError(f"{where}: jobs per day must be >= 1")
        labels = self.labels()
        if len(set(labels)) != len(labels):
            raise ValueError("account labels must be unique")
        if not 0 < self.time_scale <= 1000:
            raise ValueError("time_scale must be > 0")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0..65535")
        if self.fps < 1 or self.fps > 120:
            raise ValueError("fps must be 1..120")
        if self.video_height < 16 or self.video_height > 4320:
            raise ValueError("video_height must be 16..4320")
        if not 0 <= self.crf <= 51:
            raise ValueError("crf must be 0..51")
        if self.render_workers < 1:
            raise ValueError("render_workers must be >= 1")
        if self.render_cache_bytes is not None and self.render_cache_bytes < 0:
            raise ValueError("render_cache_bytes must be >= 0")
        if self.webhook_attempts < 1:
            raise ValueError("webhook_attempts must be >= 1")
        for name in (
            "queue_seconds",
            "processing_seconds",
            "slow_seconds",
            "webhook_timeout",
            "image_timeout",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("error_rate", "rate_limit_rate", "slow_rate", "drop_webhook_rate", "job_fail_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")

    def labels(self) -> list[str]:
        """The accounts' labels, with empty ones replaced by ``account-N``."""
        return [acct.label or f"account-{i + 1}" for i, acct in enumerate(self.accounts)]
