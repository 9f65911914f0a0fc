"""The schema from the numbered SQL files is the one the former in-code migration list built."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.store import MIGRATIONS, Store
from bot.store.migrate import migrate, schema_version, split
from bot.store.sqlite import SqliteEngine

# sqlite_master of a fresh database migrated by the in-code list the files replaced, one
# "type name: sql" a line (captured from it once, whitespace collapsed: the files indent the
# statements differently, the schema is the same).
SCHEMA_V7 = (Path(__file__).parent / "schema_v7.txt").read_text().splitlines()


def schema(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL"
            " ORDER BY type, name"
        ).fetchall()
    return [f"{kind} {name}: {' '.join(sql.split())}" for kind, name, sql in rows]


async def test_a_fresh_database_gets_exactly_the_former_schema(tmp_path: Path) -> None:
    engine = await SqliteEngine.open(tmp_path / "a.db")
    await migrate(engine, upto=7)  # the files that replaced the list; later ones add to it
    await engine.close()
    assert schema(tmp_path / "a.db") == SCHEMA_V7


async def test_a_migrated_database_is_left_as_it_is(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.db")
    await store.close()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        applied = conn.execute(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert [v for v, _ in applied] == list(range(1, len(MIGRATIONS) + 1))
    before = schema(tmp_path / "a.db")
    store = await Store.open(tmp_path / "a.db")
    assert await store.engine.run(schema_version) == len(MIGRATIONS)
    await store.close()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        again = conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()
    assert again == applied and schema(tmp_path / "a.db") == before


def test_a_file_splits_at_semicolons_ending_a_line_and_drops_comment_lines() -> None:
    text = "-- why\nCREATE TABLE t (\n    a TEXT -- kept\n);\n  -- more\nCREATE INDEX i ON t (a);\n"
    assert split(text) == ["CREATE TABLE t (\n    a TEXT -- kept\n)", "CREATE INDEX i ON t (a)"]


def test_a_statement_without_its_semicolon_is_refused() -> None:
    with pytest.raises(ValueError, match="does not end with ';'"):
        split("CREATE TABLE t (a TEXT);\nCREATE INDEX i ON t (a)\n")
