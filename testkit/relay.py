"""The relay's test doubles: subscriber tokens, signed webhook bodies, and the relay as a process."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from relay.config import RelayConfig
from testkit.accounts import WEBHOOK_SECRET
from testkit.harness import ROOT, ChildProcess

ALPHA_TOKEN = "alpha-token-0123456789"
BETA_TOKEN = "beta-token-0123456789ab"
TOKENS = {ALPHA_TOKEN: "alpha", BETA_TOKEN: "beta"}


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def job_event(api_id: str, status: str = "completed", **extra: Any) -> bytes:
    """A webhook body as the API sends it (compact JSON)."""
    payload: dict[str, Any] = {"id": api_id, "status": status}
    if status == "completed":
        payload["url"] = f"https://cdn.example/{api_id}.mp4"
    payload.update(extra)
    return json.dumps(payload, separators=(",", ":")).encode()


async def post(
    http: httpx.AsyncClient, base: str, body: bytes, channel: str | None = "alpha", *,
    signature: str | None = "sign", **kwargs: Any,
) -> httpx.Response:  # fmt: skip
    """POST a webhook as the API does; ``signature="sign"`` signs it with the real secret."""
    headers = dict(kwargs.pop("headers", {}))
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        headers["X-Doitong-Signature"] = signature
    path = "/webhooks/doitong" + (f"/{channel}" if channel else "")
    return await http.post(base + path, content=body, headers=headers, **kwargs)


async def eventually(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait until ``check()`` holds (a bound on waiting, not an assertion on speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} never happened")
        await asyncio.sleep(0.02)


class RelayProcess(ChildProcess):
    """``python -m relay`` in a subprocess, as an operator runs it; its output kept in a file."""

    stop_timeout = 10.0

    def __init__(self, tmp: Path, port: int, *args: str, tokens: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = port
        self.args = ["--port", str(port), "--db", str(tmp / "relay.db"), "--heartbeat", "0.5", *args]
        pairs = ",".join(f"{channel}:{token}" for token, channel in (tokens or TOKENS).items())
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        self.env.update(PYTHONPATH=str(ROOT), RELAY_TOKENS=pairs)
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = tmp / "relay.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay", *self.args, env=self.env, cwd=self.tmp,
                stdout=log, stderr=log,
            )  # fmt: skip
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if self.proc.returncode is not None:
                    raise AssertionError(f"relay exited {self.proc.returncode}:\n{self.log()}")
                try:
                    if (await http.get(self.base_url + "/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"relay never answered:\n{self.log()}")


def relay_config(tmp_path: Path, **overrides: Any) -> RelayConfig:
    values: dict[str, Any] = {
        "db_path": tmp_path / "relay.db",
        "tokens": TOKENS,
        "port": 0,
        "heartbeat_seconds": 0.2,
    }
    values.update(overrides)
    return RelayConfig(**values)
