"""``python -m bot``: the bot and its tools.

python -m bot animate IMAGE --prompt TEXT [...]   animate one image without Discord
python -m bot check                               validate settings and reach the API
python -m bot emulator [...]                      run the local Doitong API emulator
python -m bot relay [--host H --port P ...]       run the webhook relay for bots without a public address
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from bot import cli
from bot.config import ConfigError, Settings, load_settings, read_environment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Animate still images on Discord.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("run", help="run the Discord bot (the default)")
    sync = commands.add_parser("sync", help="publish the slash commands to Discord")
    sync.add_argument("--guild", type=int, help="a server id: publish there only (instant, for testing)")
    animate = commands.add_parser("animate", help="animate one image from the command line")
    cli.add_animate_arguments(animate)
    commands.add_parser("check", help="validate the configuration and reach the API")
    emulator = commands.add_parser(
        "emulator", help="run the local Doitong API emulator (a stand-in, not a model)"
    )
    from bot.emulator.cli import configure_parser

    configure_parser(emulator)
    relay = commands.add_parser("relay", help="run the webhook relay (bots subscribe to it with a token)")
    from bot.relay.cli import configure_parser as configure_relay

    configure_relay(relay)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO; the job log lines already say what matters.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # discord.py logs request URLs at DEBUG, and interaction URLs carry their tokens.
    logging.getLogger("discord.http").setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.getLogger("discord.webhook").setLevel(max(logging.INFO, logging.getLevelName(level)))


def load_or_exit(*, require_discord: bool = False) -> Settings:
    try:
        return load_settings(read_environment(), require_discord=require_discord)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "run"
    if args.command == "emulator":
        from bot.emulator.cli import main as emulator_main

        configure_logging("INFO")
        return emulator_main(args)
    if args.command == "relay":  # its own settings: no Discord or API ones
        from bot.relay.cli import main as relay_main

        configure_logging(os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO")
        return relay_main(args)

    if args.command in ("run", "sync"):
        from bot import runner  # imports discord.py: only the bot's own commands pay for it

        settings = load_or_exit(require_discord=True)
        configure_logging(settings.log_level)
        if args.command == "sync":
            return asyncio.run(runner.sync_commands(settings, args.guild))
        return asyncio.run(runner.run_bot(settings))

    settings = load_or_exit()
    # The CLI's own progress goes to stderr; keep library chatter down unless asked.
    configure_logging(settings.log_level if settings.log_level == "DEBUG" else "WARNING")
    try:
        if args.command == "animate":
            return asyncio.run(cli.animate(settings, args))
        if args.command == "check":
            return asyncio.run(cli.check(settings))
    except cli.CommandError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
