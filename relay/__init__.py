"""The webhook relay: a small public service that holds the API's webhooks for bots that have no
public address. The bots connect out to it (``bot/relay_client.py``) and read their events.

It imports nothing of the bot beyond its own package, ``shared.contract`` and
``bot.inbound.receiver.verify_signature``: the same Docker image runs it with ``python -m bot relay``.
"""

from relay.config import RelayConfig
from relay.server import RelayServer

__all__ = ["RelayConfig", "RelayServer"]
