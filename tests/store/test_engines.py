"""The same store on SQLite and on PostgreSQL: the schema, a job's life, upserts, and many
writers at once (two stores on one database stand for two processes). Each test runs on every
engine of tests/conftest.py (PostgreSQL from the throwaway server)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.community.admission import Policy, PoolShort, QuotaExceeded, Refused, admit
from bot.jobs import JobOptions, JobState
from bot.store import (
    MIGRATIONS,
    NewJob,
    Query,
    Store,
    StoreUnavailable,
    Tx,
    is_url,
    member_key,
    pool_key,
    pools,
    rules,
)
from bot.store.engine import changed, first_value, nothing
from bot.store.postgres import dialect, lock_id, pyformat
from shared import contract
from testkit.books import ledger_sum
from tests.conftest import OpenStore

FREE = Policy(default_plan="free")
WIDE = Policy(  # room for many jobs at once: only the pool limits them
    default_plan="wide", plans={"wide": contract.Plan("wide", 10_000, 10_000, None)}
)
GUILD = 7


def ask(user: int, guild: int | None = GUILD) -> NewJob:
    return NewJob(
        source="discord", image_ref="https://cdn/x.png", options=JobOptions(prompt="p"), user_id=user,
        guild_id=guild, channel_id=70 if guild else None,
    )  # fmt: skip


def sqlite_columns(db: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {(t, r[1]) for t in tables for r in conn.execute(f"PRAGMA table_info({t})")}


def sqlite_indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        }


async def test_migrations_give_the_same_tables_and_columns_on_every_engine(
    store: Store, location: Path | str, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.db"
    await (await Store.open(reference)).close()
    if not is_url(location):
        assert sqlite_columns(Path(location)) == sqlite_columns(reference)
        return
    columns = await store.engine.run(
        lambda tx: tx.rows(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        )
    )
    assert {(str(t), str(c)) for t, c in columns} == sqlite_columns(reference)
    indexes = await store.engine.run(
        lambda tx: tx.rows("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    )
    assert sqlite_indexes(reference) <= {str(name) for (name,) in indexes}
    # The auto-numbered ids are numbered by the database, as SQLite's rowid is.
    identity = await store.engine.run(
        lambda tx: tx.rows(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'id' AND is_identity = 'YES'"
        )
    )
    assert sorted(t for (t,) in identity) == ["audit", "ledger", "prompt_rules"]


async def test_migrating_again_and_from_two_stores_at_once_changes_nothing(open_store: OpenStore) -> None:
    first, _ = await asyncio.gather(open_store(), open_store())
    applied = await first.engine.run(lambda tx: tx.rows("SELECT version FROM schema_migrations ORDER BY 1"))
    assert [v for (v,) in applied] == list(range(1, len(MIGRATIONS) + 1))
    assert (await open_store()) is not None


async def test_a_jobs_life_gives_the_same_rows_on_every_engine(store: Store) -> None:
    await store.ensure_guild(GUILD, welcome_credits=500)
    admitted = await admit(store, ask(1), FREE)
    job = admitted.job
    await store.transition(job.id, JobState.SUBMITTING)
    await store.transition(job.id, JobState.PROCESSING, api_job_id="api-1", submitted_at=1.5)
    racing = await asyncio.gather(
        *(store.transition(job.id, JobState.COMPLETED, expected=JobState.PROCESSING, result_url="u",
                           actual_credits=70) for _ in range(3)),
        return_exceptions=True,
    )  # fmt: skip
    assert sum(not isinstance(r, Exception) for r in racing) == 1  # compare-and-set: one wins
    done = await store.transition(job.id, JobState.DELIVERED, delivered_at=3.0)
    seen = await store.get_job(job.id)
    assert seen == done
    assert (done.state, done.outcome, done.api_job_id, done.actual_credits, done.result_url) == (
        JobState.DELIVERED, "completed", "api-1", 70, "u",
    )  # fmt: skip
    assert isinstance(done.submitted_at, float) and isinstance(done.guild_id, int)
    ledger = [(r.kind, r.amount, r.note) for r in reversed(await store.ledger_rows(GUILD))]
    assert ledger == [
        ("grant", 500, "welcome credits"), ("reserve", -50, None), ("settle", -20, "settled at 70 credits"),
    ]  # fmt: skip
    guild = await store.get_guild(GUILD)
    assert guild is not None and guild.balance == 430 == await ledger_sum(store, GUILD)
    assert type(await ledger_sum(store, GUILD)) is int  # a sum is a BIGINT, not a Decimal
    assert await store.member_spent(GUILD, 1, 0.0) == 70
    usage = await store.usage(1, GUILD, 0.0, 0.0)
    assert (usage.active, usage.in_minute, usage.in_day) == (0, 1, 1)
    assert all(type(n) is int for n in (usage.active, usage.in_minute, usage.in_day))


async def test_upserts_grant_once_and_keep_one_row(open_store: OpenStore) -> None:
    a, b = await open_store(), await open_store()
    await asyncio.gather(a.ensure_guild(GUILD, 500), b.ensure_guild(GUILD, 500), a.ensure_guild(GUILD, 500))
    guild = await a.get_guild(GUILD)
    assert guild is not None and guild.balance == 500
    assert [r.kind for r in await a.ledger_rows(GUILD)] == ["grant"]

    def set_twice(tx: Tx) -> None:
        rules.set_member_rule(tx, GUILD, 1, plan="pro")
        rules.set_member_rule(tx, GUILD, 1, blocked=True, reason="spam")

    await a.atomic(set_twice)
    rule = await b.member_rule(GUILD, 1)
    assert rule is not None and (rule.plan, rule.blocked, rule.reason) == ("pro", True, "spam")
    count = await a.engine.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM member_rules"))
    assert count == 1


async def test_two_processes_cannot_both_pass_a_limit_of_one(open_store: OpenStore) -> None:
    a, b = await open_store(), await open_store()
    await a.ensure_guild(GUILD, 100_000)
    for user in range(1, 21):  # a new Free member each round: one job at a time
        results = await asyncio.gather(
            *(admit(s, ask(user), FREE) for s in (a, b, a, b)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert len(refused) == 3 and all(r.limit == "concurrent" for r in refused), results
    assert await a.count_in_states(JobState) == 20


async def test_the_pool_never_goes_negative_under_admissions_and_settlements(open_store: OpenStore) -> None:
    stores = [await open_store(), await open_store()]
    await stores[0].ensure_guild(GUILD, 1_000)  # 20 jobs' estimates, and more are asked for

    async def settle(store: Store, job_id: str) -> None:
        # Completed at a higher cost than reserved: the extra is charged from the balance.
        await store.transition(job_id, JobState.SUBMITTING)
        await store.transition(job_id, JobState.PROCESSING, api_job_id=f"api-{job_id}")
        await store.transition(job_id, JobState.COMPLETED, result_url="u", actual_credits=80)

    async def member(user: int) -> list[Any]:
        outcomes: list[Any] = []
        for turn in range(4):
            store = stores[(user + turn) % 2]
            try:
                admitted = await admit(store, ask(user), WIDE)
            except Refused as refused:
                outcomes.append(refused)
                continue
            await settle(stores[turn % 2], admitted.job.id)
            outcomes.append(admitted)
        return outcomes

    results = await asyncio.gather(*(member(user) for user in range(1, 13)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []  # no CHECK violation, no deadlock: only polite refusals
    refusals = [o for r in results if isinstance(r, list) for o in r if isinstance(o, Refused)]
    assert refusals and all(isinstance(o, PoolShort) for o in refusals)
    guild = await stores[1].get_guild(GUILD)
    assert guild is not None and 0 <= guild.balance == await ledger_sum(stores[1], GUILD)


def test_placeholders_become_pyformat_and_percent_is_escaped() -> None:
    assert pyformat("SELECT a FROM t WHERE b = ? AND c LIKE 'x%' AND d = '?'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%' AND d = '?'"
    )


def test_the_dialect_turns_sqlites_rowid_into_an_identity() -> None:
    assert dialect("CREATE TABLE t (\n    id          INTEGER PRIMARY KEY,\n    x INTEGER NOT NULL)") == (
        "CREATE TABLE t (\n    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
        "    x INTEGER NOT NULL)"
    )


def test_lock_ids_are_stable_signed_64_bit_numbers() -> None:
    assert lock_id("member:1") == lock_id("member:1") != lock_id("member:2")
    assert all(-(2**63) <= lock_id(f"pool:{i}") < 2**63 for i in range(1000))


async def test_a_lost_connection_is_reopened_and_no_transaction_is_replayed(
    store: Store, location: Path | str
) -> None:
    if not is_url(location):
        pytest.skip("PostgreSQL only: a SQLite file has no connection to lose")
    import psycopg

    async def terminate() -> None:
        pid = await store.engine.run(lambda tx: tx.scalar("SELECT pg_backend_pid()"))
        with psycopg.connect(str(location), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    await terminate()
    # A transaction that finds the connection dead at BEGIN has run nothing: it runs on a new one.
    await store.atomic(lambda tx: pools.ensure(tx, GUILD, 10))
    await terminate()
    # A statement outside a transaction fails (its caller decides), and the next call reconnects.
    with pytest.raises(StoreUnavailable):
        await store.get_guild(GUILD)
    guild = await store.get_guild(GUILD)
    assert guild is not None and guild.balance == 10


async def test_a_database_that_stays_away_is_retried_with_a_pause_not_forever_refused(
    store: Store, location: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not is_url(location):
        pytest.skip("PostgreSQL only")
    import psycopg

    from bot.store import postgres

    engine = store.engine
    assert isinstance(engine, postgres.PostgresEngine)
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 1)
    pid = await engine.run(lambda tx: tx.scalar("SELECT pg_backend_pid()"))
    real_url, engine._url = engine._url, "postgresql://postgres@127.0.0.1:1/none"  # nobody listens
    with psycopg.connect(str(location), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable):
        await store.get_guild(GUILD)  # the dead connection
    with pytest.raises(StoreUnavailable):
        await store.get_guild(GUILD)  # a reconnect that fails: the pause starts
    with pytest.raises(StoreUnavailable, match="reconnecting shortly"):
        await store.get_guild(GUILD)  # within the pause: no attempt, an answer at once
    engine._url = real_url  # the database is back
    await asyncio.sleep(postgres.RETRY_FIRST)
    assert await store.get_guild(GUILD) is None


# --- Tx.batch: several statements, one round trip on PostgreSQL -------------------------------


async def test_a_batch_gives_each_querys_result_in_order(store: Store) -> None:
    def unit(tx: Tx) -> list[Any]:
        return tx.batch(
            [
                tx.now(),
                Query("INSERT INTO guilds (guild_id, created_at) VALUES (?, ?) RETURNING guild_id",
                      (GUILD, 1.0), first_value),
                Query("UPDATE guilds SET balance = balance + ? WHERE guild_id = ?", (5, GUILD), changed),
                Query("", (), lambda rows: rows),  # not sent: its reader gets no rows
                pools.get_query(GUILD),
                Query("SELECT guild_id FROM guilds WHERE guild_id = ?", (GUILD + 1,), lambda rows: rows),
            ],
            serialize=[pool_key(GUILD), member_key(1)],
            notify=["animate_jobs"],
        )  # fmt: skip

    before = time.time()
    clock, created, updated, unsent, guild, none = await store.atomic(unit)
    assert before - 5 < clock < time.time() + 5  # the database's clock: this host's, here
    assert (created, updated, unsent, none) == (GUILD, 1, [], [])
    assert guild is not None and guild.balance == 5  # the read saw the write before it
    assert await store.engine.run(lambda tx: tx.batch([])) == []


async def test_an_error_in_a_batch_rolls_back_everything_and_reaches_the_caller(store: Store) -> None:
    def unit(tx: Tx) -> None:
        tx.write("INSERT INTO guilds (guild_id, created_at) VALUES (?, ?)", (GUILD, 1.0))
        tx.batch(
            [
                Query("INSERT INTO guilds (guild_id, created_at) VALUES (?, ?)", (GUILD + 1, 1.0), nothing),
                # CHECK (balance >= 0): fails on every engine
                Query("UPDATE guilds SET balance = -1 WHERE guild_id = ?", (GUILD,), nothing),
                Query("INSERT INTO guilds (guild_id, created_at) VALUES (?, ?)", (GUILD + 2, 1.0), nothing),
            ],
            serialize=[pool_key(GUILD)],
        )

    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        await store.atomic(unit)
    assert await store.engine.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM guilds")) == 0
    # The connection is fine afterwards: the next transaction runs, and so does a batch in it.
    await store.atomic(lambda tx: tx.batch([pools.get_query(GUILD)], serialize=[pool_key(GUILD)]))
    assert await store.ensure_guild(GUILD, 10) == await store.get_guild(GUILD)
