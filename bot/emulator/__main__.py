"""``python -m bot.emulator ...``: the emulator on its own (the bot's CLI offers it as
``python -m bot emulator ...`` too)."""

from __future__ import annotations

import argparse
import sys

from bot.emulator.cli import configure_parser, main


def run() -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.emulator")
    configure_parser(parser)
    return main(parser.parse_args())


if __name__ == "__main__":
    sys.exit(run())
