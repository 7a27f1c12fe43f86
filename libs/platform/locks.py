"""Transaction-scoped advisory locks by name (a store module: its one statement is SQL)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def lock(conn: asyncpg.Connection, names: Sequence[str]) -> None:
    """Take the locks in the given order and hold them until the transaction ends. Callers take them
    in one fixed order (riders, then hazard cells, ...) so that no two transactions deadlock."""
    if names:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(n, 42))"
            " FROM (SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i) AS in_order",
            list(names),
        )
