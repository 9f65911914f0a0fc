"""``python -m emulator ...``: the emulator on its own (also the ``animate-emulator`` script)."""

import sys

from emulator.cli import run

if __name__ == "__main__":
    sys.exit(run(prog="python -m emulator"))
