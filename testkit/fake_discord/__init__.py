"""A Discord-compatible fake server for testing an unmodified discord.py bot.

It never imports the bot's code nor discord.py: it speaks Discord's wire protocols (REST under
``/api/v10``, the gateway websocket at ``/gateway``, signed CDN attachment URLs) on loopback.
See ``README.md`` in this directory for the API and the rules it enforces.
"""

from .config import FakeConfig, MiB
from .errors import ApiError, Code, NoBotConnected, WaitTimeout
from .gateway import GatewaySession
from .http_util import Injection
from .interactions import AttachmentSpec, FakeInteraction
from .models import (
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    IdentifyViolation,
    InteractionCallback,
    MessageEvent,
    MessageVersion,
    Perm,
    RecordedAttachment,
    RecordedMessage,
    RequestRecord,
)
from .server import FakeDiscord
from .spec import SpecViolation

__all__ = [
    "ApiError",
    "AttachmentSpec",
    "Code",
    "FakeChannel",
    "FakeConfig",
    "FakeDiscord",
    "FakeGuild",
    "FakeInteraction",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "GatewaySession",
    "IdentifyViolation",
    "Injection",
    "InteractionCallback",
    "MessageEvent",
    "MessageVersion",
    "MiB",
    "NoBotConnected",
    "Perm",
    "RecordedAttachment",
    "RecordedMessage",
    "RequestRecord",
    "SpecViolation",
    "WaitTimeout",
]
