"""Reads tests and benchmarks check the books with; the SQL stays in :mod:`bot.store.pools`."""

from __future__ import annotations

from bot.store import Store, pools


async def ledger_sum(store: Store, guild_id: int) -> int:
    """The sum of a server's ledger rows (its balance must always equal it)."""
    return await store.engine.run(lambda tx: pools.ledger_sum(tx, guild_id))
