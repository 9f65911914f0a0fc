"""Settings from the environment and ``.env``, typed and validated once at start.

Every problem is collected and reported together in one :class:`ConfigError`, naming the
setting; secret values are never echoed (they are wrapped in :class:`Secret`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

from shared import contract

DEFAULT_DISCORD_API_BASE: Final = "https://discord.com/api/v10"
DEFAULT_DISCORD_GATEWAY_URL: Final = "wss://gateway.discord.gg/"
DEFAULT_DATABASE_PATH: Final = "data/animate-bot.db"
DATABASE_SCHEMES: Final = ("postgresql", "postgres")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
TRANSPORTS: Final = ("graphql", "rest")

Transport = Literal["graphql", "rest"]
T = TypeVar("T")


class ConfigError(Exception):
    """One or more settings are missing or invalid; ``problems`` names each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"configuration is not valid:\n{lines}")


class Secret:
    """A string that does not show itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Settings:
    discord_token: Secret | None = None
    discord_api_base: str = DEFAULT_DISCORD_API_BASE
    discord_gateway_url: str = DEFAULT_DISCORD_GATEWAY_URL
    doitong_api_url: str = contract.DEFAULT_BASE_URL
    doitong_api_key: Secret | None = None
    doitong_webhook_secret: Secret | None = None
    doitong_plan: str = "free"
    doitong_transport: Transport = "graphql"
    doitong_timeout: float = 30.0
    doitong_max_retries: int = 5
    webhook_host: str = "0.0.0.0"  # noqa: S104 - the receiver must be reachable from outside a container
    webhook_port: int | None = 8080  # None (WEBHOOK_PORT=off): no receiver, the bot listens on nothing
    public_webhook_url: str | None = None
    relay_url: str | None = None  # a webhook relay to subscribe to (bot/inbound/relay_subscriber.py)
    relay_token: Secret | None = None
    database_path: Path = field(default_factory=lambda: Path(DEFAULT_DATABASE_PATH))
    database_url: Secret | None = None  # PostgreSQL; wins over database_path (it may hold a password)
    log_level: str = "INFO"
    # Gateway shards: None = one process with Discord's recommended count (GET /gateway/bot);
    # shard_ids (only with shard_count) = this process's share when several split the shards.
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    # The built-in emulator, used when no DOITONG_API_KEY is set.
    emulator_time_scale: float = 0.2
    # Length of the API's rate window; only a time-scaled emulator makes it shorter than 60 s.
    doitong_rate_window: float = contract.RATE_WINDOW_SECONDS
    job_timeout: float = 900.0  # a job the API has not finished by then is marked expired
    delivery_workers: int = 4  # results sent at once (bot.pipeline.delivery.WORKERS); 1: one loop
    quota_time_scale: float = 1.0  # shrinks the per-person quota windows (tests only)
    default_user_plan: str = "free"  # the per-person quota where nothing else is set
    pool_welcome_credits: int = 500  # a server's pool starts with this (a ledger 'grant' row)
    enterprise_plan: contract.Plan = contract.PLANS["enterprise"]  # "custom" on the page: the owner's numbers
    # Networks a member's image link may point into (/animate image_url:); every other private,
    # local or reserved address is refused (bot/media/link.py).
    image_url_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # The owner's bot-wide prompt filter: one word per line, `re:` before a pattern (read, and
    # each pattern compiled, at start: a bad line stops the start with its number).
    prompt_blocklist_file: Path | None = None
    # Checked pictures kept so a job outlives its Discord attachment URL (~a day): 0 keeps none.
    picture_keep_hours: float = 168.0
    picture_keep_mb: float = 512.0

    @property
    def rate_window(self) -> float:
        """The API's window as the bot must budget it."""
        if self.uses_emulator:
            return contract.RATE_WINDOW_SECONDS * self.emulator_time_scale
        return self.doitong_rate_window

    @property
    def database(self) -> Path | str:
        """Where the store is: the PostgreSQL URL when DATABASE_URL is set, else the SQLite file
        (what :meth:`bot.store.Store.open` takes; the URL revealed, so never log this)."""
        return self.database_url.reveal() if self.database_url is not None else self.database_path

    @property
    def database_shown(self) -> str:
        """:attr:`database` as it may be shown or logged: a URL's password masked."""
        return masked_url(self.database_url.reveal()) if self.database_url else str(self.database_path)

    @property
    def uses_emulator(self) -> bool:
        return self.doitong_api_key is None

    @property
    def plans(self) -> dict[str, contract.Plan]:
        """The API's plans, with the owner's enterprise numbers."""
        return {**contract.PLANS, "enterprise": self.enterprise_plan}

    @property
    def plan(self) -> contract.Plan:
        return self.plans[self.doitong_plan]


_PASSWORD_PARAM: Final = re.compile(r"(password=)[^&]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` with its password (in the user part or as a ``password=`` parameter) masked."""
    parts = urlsplit(url)
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        url = parts._replace(netloc=f"{user.partition(':')[0]}:********@{host}").geturl()
    return _PASSWORD_PARAM.sub(r"\1********", url)


class _Reader:
    """Reads raw strings and converts them, collecting problems instead of raising early."""

    def __init__(self, values: Mapping[str, str | None]) -> None:
        self.values = values
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def secret(self, name: str) -> Secret | None:
        value = self.raw(name)
        return Secret(value) if value else None

    def database_url(self, name: str) -> Secret | None:
        """A PostgreSQL URL, checked without echoing it (it may hold a password)."""
        value = self.raw(name)
        if value is None:
            return None
        if urlsplit(value).scheme not in DATABASE_SCHEMES:
            self.problems.append(f"{name}: not a postgresql:// URL (for SQLite set DATABASE_PATH instead)")
            return None
        return Secret(value)

    def convert(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}: {value!r} is not {expected}")
            return default

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, fold: Callable[[str], str]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if fold(value) not in choices:
            self.problems.append(f"{name}: {value!r} is not one of {', '.join(choices)}")
            return default
        return fold(value)

    def url(self, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return default
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            self.problems.append(f"{name}: {value!r} is not a {' or '.join(schemes)} URL")
            return default
        return value.rstrip("/") if parts.scheme.startswith("http") else value


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(value)
    return port


def _port_or_off(value: str) -> int | None:
    return None if value.lower() == "off" else _port(value)


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


def _plan_limits(value: str) -> contract.Plan:
    """``requests-per-minute/concurrent/per-day``, per day a number or ``unlimited``."""
    rpm, concurrent, day = (part.strip() for part in value.split("/"))
    per_day = None if day.lower() == "unlimited" else int(day)
    if int(rpm) <= 0 or int(concurrent) <= 0 or (per_day is not None and per_day <= 0):
        raise ValueError(value)
    return contract.Plan("enterprise", int(rpm), int(concurrent), per_day)


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:  # also refuses NaN
        raise ValueError(value)
    return number


def _readable_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise ValueError(value)
    return path


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _delivery_workers(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 32:
        raise ValueError(value)
    return number


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def shard_id_list(value: str) -> tuple[int, ...]:
    """``0,1,5``: distinct shard ids (whole numbers >= 0), in the order given."""
    ids = tuple(_non_negative_int(part.strip()) for part in value.split(","))
    if len(set(ids)) != len(ids):
        raise ValueError(value)
    return ids


def networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``10.0.5.0/24, fd00::/8``: IP networks (a bare address is a network of one)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
    )


SHARD_COUNT_EXPECTED: Final = "a whole number >= 1"
SHARD_IDS_EXPECTED: Final = "a comma-separated list of distinct shard ids (whole numbers >= 0), e.g. 0,1"


def read_environment(env_file: Path | None = Path(".env")) -> dict[str, str | None]:
    """The process environment over the ``.env`` file: a real variable always wins."""
    values: dict[str, str | None] = {}
    if env_file is not None and env_file.is_file():
        values.update(dotenv_values(env_file))
    values.update(os.environ)
    return values


def load_settings(values: Mapping[str, str | None], *, require_discord: bool = False) -> Settings:
    """Build :class:`Settings` from raw values; raise :class:`ConfigError` naming every problem."""
    r = _Reader(values)
    token = r.secret("DISCORD_TOKEN")
    if require_discord and token is None:
        r.problems.append("DISCORD_TOKEN: missing; the bot's token from the Discord developer portal")
    default_port: int | None = 8080
    settings = Settings(
        discord_token=token,
        discord_api_base=r.url("DISCORD_API_BASE", DEFAULT_DISCORD_API_BASE, ("http", "https"))
        or DEFAULT_DISCORD_API_BASE,
        discord_gateway_url=r.url("DISCORD_GATEWAY_URL", DEFAULT_DISCORD_GATEWAY_URL, ("ws", "wss"))
        or DEFAULT_DISCORD_GATEWAY_URL,
        doitong_api_url=r.url("DOITONG_API_URL", contract.DEFAULT_BASE_URL, ("http", "https"))
        or contract.DEFAULT_BASE_URL,
        doitong_api_key=r.secret("DOITONG_API_KEY"),
        doitong_webhook_secret=r.secret("DOITONG_WEBHOOK_SECRET"),
        doitong_plan=r.choice("DOITONG_PLAN", "free", contract.PLAN_NAMES, fold=str.lower),
        doitong_transport="rest"
        if r.choice("DOITONG_TRANSPORT", "graphql", TRANSPORTS, fold=str.lower) == "rest"
        else "graphql",
        doitong_timeout=r.convert("DOITONG_TIMEOUT", 30.0, _positive_float, "a positive number of seconds"),
        doitong_max_retries=r.convert("DOITONG_MAX_RETRIES", 5, _non_negative_int, "a whole number >= 0"),
        webhook_host=r.text("WEBHOOK_HOST", "0.0.0.0"),  # noqa: S104
        webhook_port=r.convert("WEBHOOK_PORT", default_port, _port_or_off, "a port number (0-65535) or off"),
        public_webhook_url=r.url("PUBLIC_WEBHOOK_URL", None, ("http", "https")),
        relay_url=r.url("RELAY_URL", None, ("http", "https")),
        relay_token=r.secret("RELAY_TOKEN"),
        database_path=Path(r.text("DATABASE_PATH", DEFAULT_DATABASE_PATH)),
        database_url=r.database_url("DATABASE_URL"),
        log_level=r.choice("LOG_LEVEL", "INFO", LOG_LEVELS, fold=str.upper),
        shard_count=r.convert("SHARD_COUNT", None, positive_int, SHARD_COUNT_EXPECTED),
        shard_ids=r.convert("SHARD_IDS", None, shard_id_list, SHARD_IDS_EXPECTED),
        image_url_allowed_networks=r.convert(
            "IMAGE_URL_ALLOWED_NETWORKS",
            (),
            networks,
            "a comma-separated list of networks (10.0.5.0/24, fd00::/8)",
        ),
        emulator_time_scale=r.convert(
            "EMULATOR_TIME_SCALE", 0.2, _positive_float, "a positive number (1.0 = real time)"
        ),
        doitong_rate_window=r.convert(
            "DOITONG_RATE_WINDOW",
            contract.RATE_WINDOW_SECONDS,
            _positive_float,
            "a positive number of seconds",
        ),
        job_timeout=r.convert("JOB_TIMEOUT", 900.0, _positive_float, "a positive number of seconds"),
        delivery_workers=r.convert("DELIVERY_WORKERS", 4, _delivery_workers, "a whole number from 1 to 32"),
        quota_time_scale=r.convert("QUOTA_TIME_SCALE", 1.0, _positive_float, "a positive number"),
        default_user_plan=r.choice("DEFAULT_USER_PLAN", "free", contract.PLAN_NAMES, fold=str.lower),
        pool_welcome_credits=r.convert("POOL_WELCOME_CREDITS", 500, _non_negative_int, "a whole number >= 0"),
        picture_keep_hours=r.convert(
            "PICTURE_KEEP_HOURS", 168.0, _non_negative_float, "a number of hours >= 0"
        ),
        picture_keep_mb=r.convert("PICTURE_KEEP_MB", 512.0, _non_negative_float, "a number of MiB >= 0"),
        prompt_blocklist_file=r.convert(
            "PROMPT_BLOCKLIST_FILE", None, _readable_file, "a readable file (one word or re:pattern per line)"
        ),
        enterprise_plan=r.convert(
            "ENTERPRISE_LIMITS",
            contract.PLANS["enterprise"],
            _plan_limits,
            "requests-per-minute/concurrent/per-day, e.g. 600/50/unlimited",
        ),
    )
    if settings.public_webhook_url and settings.doitong_webhook_secret is None:
        r.problems.append(
            "DOITONG_WEBHOOK_SECRET: missing; PUBLIC_WEBHOOK_URL is set and webhooks cannot be "
            "verified without the signing secret"
        )
    if settings.relay_url:
        if settings.relay_token is None:
            r.problems.append(
                "RELAY_TOKEN: missing; RELAY_URL is set and the relay admits subscribers by token"
            )
        if settings.doitong_webhook_secret is None and not settings.public_webhook_url:  # else said above
            r.problems.append(
                "DOITONG_WEBHOOK_SECRET: missing; RELAY_URL is set and the bot verifies every relayed "
                "webhook with the signing secret"
            )
        if not settings.public_webhook_url:
            r.problems.append(
                "PUBLIC_WEBHOOK_URL: missing; with RELAY_URL it is the relay's public URL for this bot's "
                "channel (https://relay.example/webhooks/doitong/CHANNEL), given to the API as webhookUrl"
            )
    if settings.shard_ids is not None:
        if settings.shard_count is None:
            if r.raw("SHARD_COUNT") is None:  # else its own problem is named above
                r.problems.append(
                    "SHARD_COUNT: missing; SHARD_IDS is set and needs the total number of shards "
                    "across every process"
                )
        elif outside := [i for i in settings.shard_ids if i >= settings.shard_count]:
            r.problems.append(
                f"SHARD_IDS: {', '.join(map(str, outside))} not below SHARD_COUNT {settings.shard_count} "
                f"(shard ids run from 0 to {settings.shard_count - 1})"
            )
    if settings.doitong_api_key is None and r.raw("DOITONG_API_URL"):
        r.problems.append("DOITONG_API_KEY: missing; DOITONG_API_URL is set but no key to use it with")
    if r.problems:
        raise ConfigError(r.problems)
    return settings
