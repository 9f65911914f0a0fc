"""The store's tests run on every engine: SQLite always, PostgreSQL when TEST_DATABASE_URL names
a database they may wipe (its ``public`` schema is dropped before each test).

Start one by hand, for instance::

    initdb -D /tmp/pg/data -A trust -U postgres && pg_ctl -D /tmp/pg/data -o "-p 55433" start
    createdb -h 127.0.0.1 -p 55433 -U postgres animate_test
    TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:55433/animate_test pytest tests/store
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.store import Store

ENGINES = ("sqlite", "postgresql")
OpenStore = Callable[[], Awaitable[Store]]


def _fresh_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=ENGINES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where an empty store of the engine under test is: a SQLite path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "jobs.db"
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test on")
    _fresh_postgres(url)
    return url


@pytest.fixture
async def open_store(location: Path | str) -> AsyncIterator[OpenStore]:
    """Opens more stores on the same database (each its own connection, as another process
    would have), all closed at the end."""
    opened: list[Store] = []

    async def open_one() -> Store:
        opened.append(await Store.open(location))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    """A store on each engine (overrides the SQLite-only one of tests/conftest.py here)."""
    return await open_store()
