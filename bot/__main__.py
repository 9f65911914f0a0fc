"""``python -m bot``: the bot and its tools.

python -m bot [run] [--shard-ids 0,1 --shard-count 4]   the Discord bot (those gateway shards only)
python -m bot sync [--guild ID]                         publish the slash commands
python -m bot animate IMAGE --prompt TEXT [...]         animate one image without Discord
python -m bot check                                     validate settings and reach the API
python -m bot emulator [...]                            shortcut for ``animate-emulator`` (the stand-in API)
python -m bot relay [...]                               shortcut for ``animate-relay`` (the webhook relay)

The emulator and the relay are programs of their own; only their shortcuts are here, and nothing
of them is imported until one is asked for, so ``--help`` and the bot's start stay light.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from bot.config import (
    SHARD_COUNT_EXPECTED,
    SHARD_IDS_EXPECTED,
    ConfigError,
    Settings,
    load_settings,
    positive_int,
    read_environment,
    shard_id_list,
)
from shared import contract

T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Animate still images on Discord.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the Discord bot (the default)")
    run.add_argument(
        "--shard-ids",
        type=checked(shard_id_list, SHARD_IDS_EXPECTED),
        metavar="IDS",
        help="the gateway shards this process connects, e.g. 0,1 (overrides SHARD_IDS; needs a shard count)",
    )
    run.add_argument(
        "--shard-count",
        type=checked(positive_int, SHARD_COUNT_EXPECTED),
        metavar="N",
        help="the total number of shards across every process (overrides SHARD_COUNT; "
        "default: Discord's recommended count, all in this process)",
    )
    sync = commands.add_parser("sync", help="publish the slash commands to Discord")
    sync.add_argument("--guild", type=int, help="a server id: publish there only (instant, for testing)")
    animate = commands.add_parser("animate", help="animate one image from the command line")
    add_animate_arguments(animate)
    commands.add_parser("check", help="validate the configuration and reach the API")
    # Listed for --help only: main() hands their arguments to the programs themselves.
    commands.add_parser("emulator", help="run the local Doitong API emulator (animate-emulator --help)")
    commands.add_parser("relay", help="run the webhook relay (animate-relay --help)")
    return parser


def checked(parse: Callable[[str], T], expected: str) -> Callable[[str], T]:
    """An argparse ``type`` that says what it expected, as the settings do."""

    def convert(value: str) -> T:
        try:
            return parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {expected}") from None

    return convert


def add_animate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path, help="a JPEG, PNG or WebP file")
    p.add_argument("--prompt", required=True, help="what should happen in the video")
    p.add_argument("--duration", type=int, choices=contract.DURATIONS, default=contract.DEFAULT_DURATION)
    p.add_argument("--aspect-ratio", choices=contract.ASPECT_RATIOS, default=contract.DEFAULT_ASPECT_RATIO)
    p.add_argument("--motion", choices=contract.MOTIONS, default=contract.DEFAULT_MOTION)
    p.add_argument("--version", choices=contract.VERSIONS, default=contract.DEFAULT_VERSION)
    p.add_argument("--out", type=Path, help="where to write the MP4 (default: IMAGE's name with .mp4)")


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


def load_or_exit(*, require_discord: bool = False, overrides: Mapping[str, str] | None = None) -> Settings:
    """The settings, ``overrides`` (from the command line) over the environment, or exit 2."""
    try:
        return load_settings(read_environment() | dict(overrides or {}), require_discord=require_discord)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["emulator"]:
        from emulator.cli import run as run_emulator

        return run_emulator(arguments[1:], prog="python -m bot emulator")
    if arguments[:1] == ["relay"]:  # its own settings: no Discord or API ones
        from relay.cli import run as run_relay

        return run_relay(arguments[1:], prog="python -m bot relay")
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        args.command = "run"

    if args.command in ("run", "sync"):
        from bot.discord_adapter import runner  # discord.py: only the bot's own commands pay for it

        overrides: dict[str, str] = {}
        if getattr(args, "shard_count", None) is not None:  # `run` only, and absent when implied
            overrides["SHARD_COUNT"] = str(args.shard_count)
        if getattr(args, "shard_ids", None) is not None:
            overrides["SHARD_IDS"] = ",".join(map(str, args.shard_ids))
        settings = load_or_exit(require_discord=True, overrides=overrides)
        configure_logging(settings.log_level)
        if args.command == "sync":
            return asyncio.run(runner.sync_commands(settings, args.guild))
        try:
            return asyncio.run(runner.run_bot(settings))
        except ConfigError as exc:  # found while opening the services (the prompt filter's list)
            print(f"error: {exc}", file=sys.stderr)
            return 2

    from bot import cli  # the job stack (store, API client, media): only animate and check pay for it

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
