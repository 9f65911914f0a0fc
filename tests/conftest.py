"""Shared fixtures: a real emulator on loopback, a store in a temp dir, test pictures, and a
throwaway PostgreSQL server with an empty database per test (skipped when there is none, unless
REQUIRE_POSTGRES=1)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bot.store import Store
from emulator.server import Emulator
from relay.server import RelayServer
from testkit.accounts import emulator_config
from testkit.fake_discord.server import watch_fakes
from testkit.harness import watch_bots
from testkit.postgres import (
    REQUIRE_ENV,
    PostgresError,
    PostgresServer,
    dbname_of,
    fresh_database,
    unique_name,
)
from testkit.relay import relay_config

MakeRelay = Callable[..., Awaitable[RelayServer]]


@pytest.fixture(autouse=True)
def discord_spec_check() -> Iterator[None]:
    """Fails a test whose Discord fake recorded a spec violation: a request Discord would refuse
    (400 / 50035, its bot has a bug) or an answer the spec does not allow (the fake has one).

    Autouse, so it wraps every fake the test's own fixtures start and checks after they closed.
    A test that sends a bad request on purpose takes it with ``fake.accept_violations()``.
    """
    with watch_fakes() as fakes:
        yield
    found = [str(v) for fake in fakes for v in (*fake.spec_violations, *fake.response_violations)]
    if found:
        pytest.fail(
            "the Discord fake recorded spec violations (testkit/fake_discord/README.md, 'The spec'):\n  "
            + "\n  ".join(found),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def bot_keeps_up() -> Iterator[None]:
    """Fails a test in which a real bot process logged discord.py's "Can't keep up" (its
    heartbeat ACK came back later than 10 s): the fake answers heartbeats as Discord does."""
    with watch_bots() as bots:
        yield
    behind = [line for bot in bots for line in bot.log().splitlines() if "Can't keep up" in line]
    if behind:
        pytest.fail("a bot fell behind its gateway heartbeat:\n  " + "\n  ".join(behind), pytrace=False)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(emulator_config()) as emu:
        yield emu


OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where an empty store of the engine under test is: a SQLite file, or a fresh PostgreSQL
    database of this test's own (skipped without PostgreSQL, unless REQUIRE_POSTGRES=1)."""
    if request.param == "sqlite":
        return tmp_path / "jobs.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def open_store(location: Path | str) -> AsyncIterator[OpenStore]:
    """Opens stores on the test's database (each its own connection, as another process would
    have), all closed at the end."""
    opened: list[Store] = []

    async def open_one() -> Store:
        opened.append(await Store.open(location))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    """A store on each engine: every test that asks for one runs on SQLite and on PostgreSQL."""
    return await open_store()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store, for the few tests that use SQLite itself (its trace hook, a trigger)."""
    s = await Store.open(tmp_path / "jobs.db")
    yield s
    await s.close()


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[MakeRelay]:
    """Start relays (stopped at the end); later ones may reuse the port and the database."""
    started: list[RelayServer] = []

    async def make(**overrides: Any) -> RelayServer:
        relay = RelayServer(relay_config(tmp_path, **overrides))
        await relay.start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        await relay.stop()


@pytest.fixture
async def relay(make_relay: MakeRelay) -> RelayServer:
    return await make_relay()


def no_postgres(reason: str) -> NoReturn:
    """Skip, or fail loudly where PostgreSQL is required (CI sets REQUIRE_POSTGRES=1)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the session: TEST_POSTGRES_URL's, or a throwaway one started here."""
    server = PostgresServer.from_env()
    try:
        server.start()
    except PostgresError as e:
        no_postgres(str(e))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> Iterator[str]:
    """The name of an empty database each test's own is cloned from."""
    name = unique_name("template")
    try:
        postgres_server.create_database(name)
    except PostgresError as e:
        no_postgres(str(e))
    yield name
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A libpq URL to a fresh empty database of this test's own (dropped afterwards)."""
    url = fresh_database(postgres_server, postgres_template)
    yield url
    postgres_server.drop_database(dbname_of(url))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use PostgreSQL are marked ``postgres`` (`make test-pg` runs only those)."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: uses the PostgreSQL server (added by tests/conftest.py)")
