"""``animate-relay`` (or ``python -m relay``): options, environment, and serving until SIGINT/SIGTERM.

Tokens and secrets come from files or the environment, never from the command line (where
``ps`` would show them), and are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from relay.config import DEFAULT_RETENTION_SECONDS, RelayConfig
from relay.server import RelayServer
from shared.signals import stop_requested
from shared.webhooks import WEBHOOK_PATH

DEFAULT_DB = "data/relay.db"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Hold the API's webhooks for bots that have no public address; they subscribe with a token. "
        "Tokens: RELAY_TOKENS='channel:token,...' or --tokens-file (one channel:token a line). "
        "Optional early signature check: RELAY_SECRETS='channel:secret,...' or --secrets-file."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default %(default)s)")
    parser.add_argument(
        "--db", type=Path, default=None, help=f"SQLite file (default $RELAY_DB or {DEFAULT_DB})"
    )
    parser.add_argument("--tokens-file", type=Path, help="subscriber tokens, one channel:token a line")
    parser.add_argument("--secrets-file", type=Path, help="webhook secrets, one channel:secret a line")
    parser.add_argument(
        "--retention-days",
        type=float,
        default=DEFAULT_RETENTION_SECONDS / 86_400,
        help="an unacknowledged event expires after this (default %(default)s days)",
    )
    parser.add_argument("--max-body", type=int, default=64 * 1024, help="bytes per webhook (default 64 KiB)")
    parser.add_argument(
        "--rate-per-minute",
        type=int,
        default=600,
        help="webhooks per channel per minute (default %(default)s)",
    )
    parser.add_argument(
        "--max-held",
        type=int,
        default=100_000,
        help="unacknowledged events per channel (default %(default)s)",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=15.0, help="seconds between keep-alives on an idle stream"
    )
    parser.add_argument(
        "--public-url", help="the relay's public base URL, to print each channel's webhookUrl"
    )


def parse_pairs(text: str, what: str, source: str) -> list[tuple[str, str]]:
    """``channel:value`` entries split by commas or lines; '#' starts a comment line.

    Errors name the entry's position, never its value (it holds a token or a secret).
    """
    pairs: list[tuple[str, str]] = []
    entries = [
        e.strip() for line in text.splitlines() if not line.strip().startswith("#") for e in line.split(",")
    ]
    for n, entry in enumerate((e for e in entries if e), start=1):
        channel, sep, value = entry.partition(":")
        if not sep or not channel.strip() or not value.strip():
            raise ValueError(f"{source}: entry {n} is not channel:{what}")
        pairs.append((channel.strip(), value.strip()))
    return pairs


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc


def config_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> RelayConfig:
    """The configuration; ValueError naming the problem (never a token or a secret)."""
    token_pairs: list[tuple[str, str]] = []
    if env.get("RELAY_TOKENS", "").strip():
        token_pairs += parse_pairs(env["RELAY_TOKENS"], "token", "RELAY_TOKENS")
    if args.tokens_file is not None:
        token_pairs += parse_pairs(_read(args.tokens_file), "token", str(args.tokens_file))
    tokens: dict[str, str] = {}
    for channel, token in token_pairs:
        if token in tokens:
            raise ValueError(f"channels {tokens[token]!r} and {channel!r} have the same token")
        tokens[token] = channel
    secret_pairs: list[tuple[str, str]] = []
    if env.get("RELAY_SECRETS", "").strip():
        secret_pairs += parse_pairs(env["RELAY_SECRETS"], "secret", "RELAY_SECRETS")
    if args.secrets_file is not None:
        secret_pairs += parse_pairs(_read(args.secrets_file), "secret", str(args.secrets_file))
    if not tokens:
        raise ValueError("no subscriber token: set RELAY_TOKENS='channel:token' or give --tokens-file")
    config = RelayConfig(
        db_path=args.db or Path(env.get("RELAY_DB", "").strip() or DEFAULT_DB),
        tokens=tokens,
        secrets=dict(secret_pairs),
        host=args.host,
        port=args.port,
        retention_seconds=args.retention_days * 86_400,
        max_body=args.max_body,
        rate_per_minute=args.rate_per_minute,
        max_held=args.max_held,
        heartbeat_seconds=args.heartbeat,
        public_url=args.public_url,
    )
    config.validate()
    return config


async def serve(config: RelayConfig) -> int:
    relay = RelayServer(config)
    try:
        await relay.start()
    except OSError as exc:
        print(f"relay: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    base = (config.public_url or relay.base_url).rstrip("/")
    print(f"relay listening on {relay.base_url} (subscribers: GET /events with their token)", flush=True)
    for channel in config.channels:
        print(f"  webhookUrl for {channel}: {base}{WEBHOOK_PATH}/{channel}", flush=True)
    try:
        await stop_requested()
    finally:
        await relay.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the relay until SIGINT/SIGTERM; the exit code (2 for bad options)."""
    try:
        config = config_from_args(args, os.environ)
    except ValueError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(config))
    except KeyboardInterrupt:  # where signal handlers cannot be installed
        return 0


def run(argv: Sequence[str] | None = None, prog: str = "animate-relay") -> int:
    """The ``animate-relay`` console script (also ``python -m relay``, ``python -m bot relay``)."""
    parser = argparse.ArgumentParser(prog=prog)
    configure_parser(parser)
    args = parser.parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    log_format = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=log_format, stream=sys.stderr)
    return main(args)
