"""The webhook relay: a small public service that holds the API's webhooks for bots that have no
public address. The bots connect out to it (``bot/inbound/relay_subscriber.py``) and read their
events.

It imports nothing of the bot: only its own package and ``shared`` (the API's facts and the
webhook signature check). The same Docker image runs it with ``animate-relay`` (or the
``python -m bot relay`` shortcut).
"""

from relay.config import RelayConfig
from relay.server import RelayServer

__all__ = ["RelayConfig", "RelayServer"]
