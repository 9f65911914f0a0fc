"""What every benchmark shares: its Result, the machine description and small measuring helpers.

A benchmark module is ``bench/bench_<name>.py`` with ``TITLE`` (the issue's numbered heading),
optionally ``ORDER`` (where it sits in RESULTS.md) and ``run(smoke: bool) -> Result``. It prints
each figure as it is measured, beside a bound measured in the same run, and records each of the
issue's targets as met or missed: text only, never an assertion (a slow shared machine must not
fail a build; the figures are for people to read).
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import socket
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.store import Store
from bot.store.sqlite import SqliteTx

if TYPE_CHECKING:
    from testkit.postgres import PostgresServer

# Every statement the SQLite engine runs goes through one of these.
_TX_STATEMENTS = ("rows", "first", "write", "write_many")

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    value: str  # already formatted: "2,345 jobs/s", "61.2 MB"
    bound: str = ""  # the same run's reference for it, formatted likewise


@dataclass(frozen=True, slots=True)
class Target:
    text: str  # the target, e.g. ">= 2,000 jobs/s"
    measured: str
    met: bool

    @property
    def verdict(self) -> str:
        return "met" if self.met else "MISSED"


@dataclass(slots=True)
class Result:
    """What one benchmark measured. Adding to it prints at once, so a long run shows progress."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (caption, preformatted text)

    def figure(self, label: str, value: str, bound: str = "") -> None:
        self.figures.append(Figure(label, value, bound))
        beside = f"   (bound: {bound})" if bound else ""
        say(f"[{self.key}] {label}: {value}{beside}")

    def target(self, text: str, measured: str, met: bool) -> None:
        t = Target(text, measured, met)
        self.targets.append(t)
        say(f"[{self.key}] target {text}: {measured} -> {t.verdict}")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def block(self, caption: str, text: str) -> None:
        self.blocks.append((caption, text))
        say(f"[{self.key}] {caption}:\n{text}")


def say(text: str) -> None:
    print(text, flush=True)


# --- formatting --------------------------------------------------------------------------------


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- the machine -------------------------------------------------------------------------------


def _proc_field(path: str, name: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        return None
    return None


def machine() -> str:
    """CPU model, cores, RAM (from /proc), OS, Python and SQLite versions: one line."""
    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_kib.split()[0]) / 1024**2:.1f} GiB RAM" if mem_kib else "RAM unknown"
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (
        f"{cpu}, {cores} cores ({usable} usable), {ram}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; host {socket.gethostname()}"
    )


# --- processes ---------------------------------------------------------------------------------


def proc_status_bytes(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` size field (VmRSS, VmHWM) in bytes."""
    value = _proc_field(f"/proc/{pid}/status", name)
    if value is None:
        raise RuntimeError(f"/proc/{pid}/status has no {name}")
    number, unit = value.split()
    assert unit == "kB"
    return int(number) * 1024


def python() -> str:
    return sys.executable


# --- rows written straight into a migrated database ------------------------------------------------

# The jobs columns the benchmarks fill when they load rows directly (bulk history, jobs in flight):
# spelled out here, not borrowed from the store's private lists, so a column the store adds later
# (with its default) does not break a benchmark's row tuples.
JOB_COLUMNS = (
    "id, idempotency_key, api_job_id, state, source, user_id, guild_id, channel_id, interaction_id, "
    "interaction_token, token_expires_at, image_ref, prompt, duration, aspect_ratio, motion, version, "
    "estimated_credits, actual_credits, result_url, error, created_at, updated_at, submitted_at, "
    "completed_at, delivered_at, status_channel_id, status_message_id, upload_limit, outcome, delivery_note"
)
INSERT_JOB = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * len(JOB_COLUMNS.split(',')))})"


# --- looking inside the store's connection ----------------------------------------------------------


class SqlRecorder:
    """What the store's connection runs, however the store calls it (``async with``).

    SQLite's own trace callback (on the engine's database thread) sees every statement with its
    values filled in; ``executed`` keeps them. Wrapping the SQLite engine's ``Tx`` statement
    methods adds the time of each statement on that thread (every statement of the store goes
    through one of them); wrapping the engine's hop counts round trips to the database thread
    (each is a thread hand-off).
    """

    def __init__(self, store: Store) -> None:
        self.engine: Any = store.engine  # the store's own engine: exactly what the bot's code runs
        self.executed: list[str] = []  # every statement, values filled in (SQLite's expanded SQL)
        self.seconds: dict[str, float] = defaultdict(float)  # by SQL text as the store wrote it
        self.calls: dict[str, int] = defaultdict(int)
        self.hops = 0
        self._originals: dict[str, Any] = {}

    async def __aenter__(self) -> SqlRecorder:
        engine = self.engine
        hop = engine._hop

        async def counting_hop(fn: Any, *args: Any) -> Any:
            self.hops += 1
            return await hop(fn, *args)

        def on_thread(method: Any) -> Any:
            def call(tx: SqliteTx, sql: str, parameters: Any = ()) -> Any:
                key = " ".join(sql.split())
                self.calls[key] += 1
                began = time.perf_counter()
                try:
                    return method(tx, sql, parameters)
                finally:
                    self.seconds[key] += time.perf_counter() - began

            return call

        await engine.run(lambda tx: tx.connection.set_trace_callback(self.executed.append))
        engine._hop = counting_hop
        for name in _TX_STATEMENTS:
            self._originals[name] = getattr(SqliteTx, name)
            setattr(SqliteTx, name, on_thread(self._originals[name]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        del self.engine._hop  # the class's method again
        for name, method in self._originals.items():
            setattr(SqliteTx, name, method)
        await self.engine.run(lambda tx: tx.connection.set_trace_callback(None))

    @property
    def statements(self) -> int:
        return len(self.executed)


def sql_shape(sql: str) -> str:
    """A statement with its values taken out, so runs with different values compare."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", " ".join(sql.split()))
    return re.sub(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", "?", sql)


def run_on_postgres(
    key: str,
    title: str,
    smoke: bool,
    measure: Callable[[bool, Result, PostgresServer], Coroutine[Any, Any, None]],
) -> Result:
    """A benchmark's ``run`` on a throwaway PostgreSQL server (TEST_POSTGRES_URL's, if set):
    measured, or a note saying why not when no server could be started."""
    from testkit.postgres import PostgresError, PostgresServer  # loaded only by the benchmarks that need it

    result = Result(key, title)
    server = PostgresServer.from_env()
    try:
        server.start()
    except PostgresError as exc:
        say(f"[{key}] no PostgreSQL, nothing measured: {exc}")
        result.note(f"Not measured: no PostgreSQL server could be started ({exc}).")
        return result
    try:
        asyncio.run(measure(smoke, result, server))
    finally:
        server.stop()
    return result
