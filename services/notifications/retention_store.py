"""Retention's SQL: which rows of the notifications' tables are done and old, removed a batch at a time."""

from __future__ import annotations

from datetime import datetime

import asyncpg

# What "done" means, table by table. An award summed into a notice, or one too old to be told of (stale
# after a day by default), is done; a hold long expired can be warned of no more.
_DONE_AND_OLD: dict[str, str] = {
    "webhook_delivery": "status <> 'pending' AND created_at < $1",
    "rider_notice": "status <> 'pending' AND created_at < $1",
    "notice_award": "heard_at < $1",
    "notice_hold": "expires_at < $1",
}
PRUNED_TABLES = tuple(_DONE_AND_OLD)


class Retention:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def prune(self, table: str, before: datetime, batch: int) -> int:
        """Remove at most ``batch`` done rows of ``table`` older than ``before``; how many went."""
        where = _DONE_AND_OLD[table]  # a key of the table above, never a caller's text
        status = await self._conn.execute(
            f"DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE {where} LIMIT $2))",
            before,
            batch,
        )
        return int(status.rsplit(" ", 1)[-1])
