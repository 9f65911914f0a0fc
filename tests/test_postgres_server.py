"""The PostgreSQL test server (testkit/postgres.py, tests/conftest.py): it accepts connections, each
test gets an empty database of its own, and cloning the template is quick."""

from __future__ import annotations

import time

import pytest

from testkit.postgres import PostgresServer, dbname_of, fresh_database, run_sql, with_dbname


def test_the_url_accepts_connections(postgres_url: str) -> None:
    assert run_sql(postgres_url, "select 1") == "1"
    assert run_sql(postgres_url, "select current_database()") == dbname_of(postgres_url)


# Two tests doing the same: whichever runs second would find the first one's table if the
# database were shared; each passes alone and in either order.
@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_fresh_database(postgres_url: str, turn: str) -> None:
    assert run_sql(postgres_url, "select to_regclass('public.marker') is null") == "t"
    run_sql(postgres_url, f"create table marker (turn text default '{turn}')")
    assert run_sql(postgres_url, "select to_regclass('public.marker') is not null") == "t"


def test_a_database_from_the_template_is_quick(
    postgres_server: PostgresServer, postgres_template: str
) -> None:
    run_sql(postgres_server.url(postgres_template), "select 1")  # connect, then leave: a template
    # may have no one connected while it is copied
    began = time.perf_counter()
    url = fresh_database(postgres_server, postgres_template)
    took = time.perf_counter() - began
    try:
        assert run_sql(url, "select count(*) from pg_tables where schemaname = 'public'") == "0"
    finally:
        postgres_server.drop_database(dbname_of(url))
    print(f"server started in {postgres_server.started_in:.3f} s; database from template in {took:.3f} s")


def test_urls_name_the_database() -> None:
    assert with_dbname("postgresql://u:pw@db:5432/postgres?sslmode=disable", "t1") == (
        "postgresql://u:pw@db:5432/t1?sslmode=disable"
    )
    assert dbname_of("postgresql://postgres@127.0.0.1:5432/t1") == "t1"
