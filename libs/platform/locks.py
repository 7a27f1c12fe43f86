"""Transaction-scoped advisory locks by name (a store module: its one statement is SQL)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# Set (SET LOCAL) by a transaction whose writes all go to a scratch schema of its own (replay, what-if:
# services/points/store.py, ScratchStore). Nobody else can see those rows, so the locks that guard the
# live ones guard nothing there; taken anyway, they would make live scorers of the same riders wait for
# the whole run.
SCRATCH_SETTING = "warmbee.scratch"


async def lock(conn: asyncpg.Connection, names: Sequence[str]) -> None:
    """Take the locks in the given order and hold them until the transaction ends. Callers take them
    in one fixed order (riders, then hazard cells, ...) so that no two transactions deadlock. A scratch
    transaction (``SCRATCH_SETTING``) takes none."""
    if names:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(n, 42))"
            " FROM (SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i) AS in_order"
            f" WHERE coalesce(current_setting('{SCRATCH_SETTING}', true), '') <> 'on'",
            list(names),
        )
