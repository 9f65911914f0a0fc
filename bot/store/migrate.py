"""The schema: numbered SQL files in ``migrations/``, applied in order, each in one transaction.

A file is ``NNN_what.sql``; NNN is the schema version it brings (``schema_migrations`` keeps
the versions applied, so a database at version 7 skips files 001 to 007). Add a file, never
edit one that has shipped. The files ship inside the package and are read with
``importlib.resources``.

Splitting a file into statements is deliberately simple: a statement ends with ``;`` at the
end of a line, and lines starting with ``--`` are comments. Our SQL has no triggers and no
semicolons inside strings; a file that needs either needs a real splitter first.

The files are written in SQLite's dialect and run on both engines; each statement passes
through the engine's :meth:`~bot.store.engine.Engine.dialect` hook first, the one place the
engines' DDL differs (PostgreSQL: ``INTEGER PRIMARY KEY`` becomes an identity column).

Several processes may start at once: each step runs in a transaction holding the key
:data:`MIGRATING` (:meth:`~bot.store.engine.Tx.serialize`) and re-reads the version inside it,
so one process applies a file and the others skip it.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from importlib import resources
from typing import Final

from bot.store.engine import Engine, Tx

log = logging.getLogger(__name__)

_FILE: Final = re.compile(r"(\d{3})_\w+\.sql")
MIGRATING: Final = "schema:migrations"  # the key every migrating transaction holds


def split(text: str) -> list[str]:
    """The statements of a migration file, without their ``;`` and without comment lines."""
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().removesuffix(";"))
            current = []
    if "".join(current).strip():
        raise ValueError(f"a statement does not end with ';' at the end of a line: {' '.join(current)[:80]}")
    return statements


def load() -> list[list[str]]:
    """Every migration's statements, version 1 first; the files must be numbered 001 onward."""
    folder = resources.files("bot.store") / "migrations"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    for version, name in enumerate(names, start=1):
        match = _FILE.fullmatch(name)
        if match is None or int(match[1]) != version:
            raise RuntimeError(f"migration {name!r} is not numbered {version:03d}_<what>.sql")
    return [split((folder / name).read_text(encoding="utf-8")) for name in names]


# One list of statements per schema version, version 1 first.
MIGRATIONS: Final = load()


async def migrate(engine: Engine, upto: int | None = None) -> None:
    """Bring the database to the latest schema version (a no-op when it is there already);
    ``upto`` stops at that version instead (the tests compare a past schema)."""
    await engine.atomic(_create_table)
    current = await engine.run(schema_version)
    for version, statements in enumerate(MIGRATIONS[:upto], start=1):
        dialect = [engine.dialect(statement) for statement in statements]
        if version > current and await engine.atomic(functools.partial(_apply, version, dialect)):
            log.info("database migrated to schema version %d", version)


def _create_table(tx: Tx) -> None:
    # Under the key: PostgreSQL's IF NOT EXISTS is no guard against a creation in flight.
    tx.serialize(MIGRATING)
    tx.write(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )


def _apply(version: int, statements: list[str], tx: Tx) -> bool:
    tx.serialize(MIGRATING)
    # Re-read inside the lock: another process may have migrated meanwhile.
    if version <= schema_version(tx):
        return False
    for statement in statements:
        tx.write(statement)
    tx.write("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))
    return True


def schema_version(tx: Tx) -> int:
    version = tx.scalar("SELECT MAX(version) FROM schema_migrations")
    return int(version) if version is not None else 0
