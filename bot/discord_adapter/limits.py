"""Discord's limits the bot plans around.

They are documented in the workspace's ``../shared/discord-notes.md`` (outside this repository).
"""

from __future__ import annotations

from typing import Final

DEFAULT_UPLOAD_LIMIT: Final = 10 * 1024 * 1024  # per file, for a server without boosts (since 2025)
TOKEN_LIFETIME: Final = 15 * 60.0  # seconds an interaction token may be used for follow-ups
TOKEN_MARGIN: Final = 30.0  # seconds: do not start a request on a token about to expire
