"""Benchmark 7, admission on PostgreSQL: the same ONE admission transaction, in jobs/s.

The real :func:`bot.community.admission.admit` on a :class:`bot.store.Store` opened with a
``postgresql://`` URL (psycopg 3, one connection on the engine's own thread, the member's and
the pool's advisory locks taken first), beside a bare loop on the same server with the same
driver: the same job row, one row per transaction (BEGIN / INSERT / COMMIT), one hop to a
database thread per row, as admission makes. That bare loop is the bound of any
one-transaction-per-job admission on this server; the target is >= 40% of it.

The server is a throwaway one (:mod:`testkit.postgres`: ``fsync=off``, in memory where there is
room), or the one ``TEST_POSTGRES_URL`` names. Without PostgreSQL the benchmark says so and
measures nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.bench_admission import GUILD, OPTIONS, admission_rate, new_job
from bench.common import JOB_COLUMNS, Result, median, pct, rate, run_on_postgres
from bot.store import Store, pools
from testkit.postgres import PostgresServer, unique_name

TITLE = "7. Admission on PostgreSQL"
ORDER = 7
TARGET_SHARE = 0.40

_INSERT = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({', '.join(['%s'] * len(JOB_COLUMNS.split(',')))})"


def _bare_row(i: int) -> tuple[Any, ...]:
    now = time.time()
    new = new_job(i)
    return (
        f"2{i:07x}", str(uuid.uuid4()), None, "queued", "bench-bare", new.user_id, new.guild_id,
        new.channel_id, new.interaction_id, new.interaction_token, new.token_expires_at,
        new.image_ref, OPTIONS.prompt, OPTIONS.duration, OPTIONS.aspect_ratio, OPTIONS.motion,
        OPTIONS.version, OPTIONS.estimated_credits, None, None, None, now, now, None, None, None,
        None, None, new.upload_limit, None, None,
    )  # fmt: skip


async def bare_rate(url: str, first: int, n: int) -> float:
    """One job row per transaction through psycopg, one hop to a database thread per row."""
    import psycopg

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-bare-pg")
    loop = asyncio.get_running_loop()
    conn = await loop.run_in_executor(executor, lambda: psycopg.connect(url, autocommit=True))

    def one(i: int) -> None:
        conn.execute("BEGIN")
        conn.execute(_INSERT, _bare_row(i))  # type: ignore[arg-type]  # built from our own columns
        conn.execute("COMMIT")

    try:
        began = time.perf_counter()
        for i in range(first, first + n):
            await loop.run_in_executor(executor, one, i)
        elapsed = time.perf_counter() - began
        # Take the bare rows out again: they must not count as the next round's history.
        await loop.run_in_executor(executor, conn.execute, "DELETE FROM jobs WHERE source = 'bench-bare'")
        return n / elapsed
    finally:
        await loop.run_in_executor(executor, conn.close)
        executor.shutdown(wait=False)


async def _measure(smoke: bool, result: Result, server: PostgresServer) -> None:
    name = unique_name("bench")
    server.create_database(name)
    try:
        url = server.url(name)
        store = await Store.open(url)
        try:
            n, rounds = (100, 1) if smoke else (2_000, 3)
            await store.ensure_guild(GUILD)
            await store.atomic(lambda tx: pools.topup(tx, GUILD, 10**12, actor_id=1))  # never short
            await admission_rate(store, 0, 50)  # warm: the server row, the plans, the statements
            admitted, bare = [], []
            for r in range(rounds):  # interleaved, so a noisy moment costs both sides alike
                admitted.append(await admission_rate(store, 1_000 + r * n, n))
                bare.append(await bare_rate(url, 1_000_000 + r * n, n))
        finally:
            await store.close()
    finally:
        server.drop_database(name)
    a, b = median(admitted), median(bare)
    result.figure(
        "admit() on PostgreSQL, one store (one connection)", rate(a, "jobs/s"), rate(b, "rows/s bare")
    )
    result.figure("admit() / bare on PostgreSQL", pct(a / b))
    result.target(f">= {pct(TARGET_SHARE)} of the bare PostgreSQL loop", pct(a / b), a / b >= TARGET_SHARE)
    result.note(
        f"{n} admissions per round, median of {rounds} round(s), admission and bare rounds interleaved; "
        "one member in 1,000 per admission (the bench_admission members), one server's pool. Bare: the "
        "same job row, BEGIN / INSERT / COMMIT per row on one psycopg connection, one hop per row. "
        "Server: testkit.postgres (fsync=off) unless TEST_POSTGRES_URL names one."
    )


def run(smoke: bool) -> Result:
    return run_on_postgres("admission_pg", TITLE, smoke, _measure)
