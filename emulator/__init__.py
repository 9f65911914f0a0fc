"""A local stand-in for the Doitong "Runway image-to-video" API.

A real HTTP server (aiohttp) speaking the API contract (``shared.contract``; the workspace's
``../shared/doitong-api.md``) over GraphQL and REST, with per-key plans, rate limits, credits,
idempotency, webhooks and fault injection; its "model" pans and zooms the input image into a
real H.264 MP4 (PyAV).

It is independent of the bot on purpose: it imports nothing of ``bot`` (an import-linter
contract says so), only its own package and ``shared`` (the API's facts, the stop signal), and
signs its webhooks with its own code, so a bug shared by both sides cannot hide. It runs as
``animate-emulator`` (or ``python -m emulator``).

    from emulator.config import AccountConfig, EmulatorConfig
    from emulator.server import Emulator
"""
