"""``python -m relay ...``: the webhook relay (also the ``animate-relay`` script)."""

import sys

from relay.cli import run

if __name__ == "__main__":
    sys.exit(run(prog="python -m relay"))
