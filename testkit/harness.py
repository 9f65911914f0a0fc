"""The real bot process, started unmodified against the Discord fake and the API emulator."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bot.jobs import Job, JobState
from bot.store import Store
from testkit.accounts import PRO_KEY, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_watchers: list[list[BotProcess]] = []


@contextlib.contextmanager
def watch_bots() -> Iterator[list[BotProcess]]:
    """Collects every ``BotProcess`` made inside the block (the test harness reads their logs
    afterwards: ``tests/conftest.py``)."""
    made: list[BotProcess] = []
    _watchers.append(made)
    try:
        yield made
    finally:
        _watchers.remove(made)


class ChildProcess:
    """A subprocess this test run started, its output kept in ``log_path`` for failure reports:
    SIGTERM with a deadline, or kill -9."""

    stop_timeout = 15.0  # seconds after SIGTERM before it is killed
    proc: asyncio.subprocess.Process | None = None
    log_path: Path

    async def kill(self) -> None:
        """kill -9: no cleanup at all."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout=self.stop_timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class BotProcess(ChildProcess):
    """`python -m bot` in a subprocess, its stderr kept in a log file for failure reports."""

    def __init__(
        self,
        tmp: Path,
        fake: Any,
        emulator_url: str,
        *,
        webhooks: bool = True,
        api_key: str | None = PRO_KEY,
        plan: str = "pro",
        rate_window: float = 1.2,
        shard_count: int | None = None,
        shard_ids: Sequence[int] | None = None,
        run_args: Sequence[str] = (),
        extra: dict[str, str] | None = None,
    ) -> None:
        for watcher in _watchers:
            watcher.append(self)
        self.tmp = tmp
        self.db = tmp / "bot.db"
        self.webhook_port = free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DOITONG_", "DISCORD_", "SHARD_"))
        }
        self.env.update(
            PYTHONPATH=str(ROOT),
            DISCORD_TOKEN=fake.config.token,
            DISCORD_API_BASE=fake.api_base,
            DISCORD_GATEWAY_URL=fake.gateway_url,
            DOITONG_PLAN=plan,
            DOITONG_RATE_WINDOW=str(rate_window),
            DOITONG_WEBHOOK_SECRET=WEBHOOK_SECRET,
            WEBHOOK_HOST="127.0.0.1",
            WEBHOOK_PORT=str(self.webhook_port),
            DATABASE_PATH=str(self.db),
            LOG_LEVEL="INFO",
            DEFAULT_USER_PLAN="pro",
        )
        if api_key is not None:  # else: the bot's built-in emulator
            self.env.update(DOITONG_API_URL=emulator_url, DOITONG_API_KEY=api_key)
        if webhooks:
            self.env["PUBLIC_WEBHOOK_URL"] = self.webhook_url
        if shard_count is not None:  # else: discord.py asks GET /gateway/bot, all shards here
            self.env["SHARD_COUNT"] = str(shard_count)
        if shard_ids is not None:
            self.env["SHARD_IDS"] = ",".join(map(str, shard_ids))
        self.run_args = list(run_args)  # after `python -m bot`, e.g. ["run", "--shard-ids", "1", ...]
        self.env.update(extra or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.log_path = tmp / "bot.log"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/healthz"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/webhooks/doitong"

    async def run_command(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, env=self.env, cwd=self.tmp,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    async def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *self.run_args, env=self.env, cwd=self.tmp, stdout=log, stderr=log
        )
        log.close()

    async def jobs(self) -> list[Job]:
        if not self.db.exists():
            return []
        store = await Store.open(self.db)
        try:
            return await store.jobs_in_states(JobState)
        finally:
            await store.close()

    async def wait_jobs(self, predicate: Callable[[list[Job]], bool], timeout: float = 30) -> list[Job]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            jobs = await self.jobs()
            if predicate(jobs):
                return jobs
            if loop.time() > deadline:
                raise AssertionError(
                    f"jobs never matched: {[(j.id, j.state) for j in jobs]}\n{self.log()[-3000:]}"
                )
            await asyncio.sleep(0.1)
