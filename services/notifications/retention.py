"""Retention of the notifications' working tables: deliveries and notices that are done, and the awards and
holds they were made from, are removed once older than the retention (30 days by default).

Why it is safe: a delivery row is what keeps an event from being delivered twice when Kafka brings it
again, so the retention must be longer than the `points-ledger` topic's (7 days by default in Apache
Kafka); a failed delivery can be retried by hand until it goes. Receivers de-duplicate by webhook-id anyway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import structlog

from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications import metrics
from services.notifications.retention_store import PRUNED_TABLES, Retention

log = structlog.get_logger(__name__)

PRUNE_BATCH = 5000  # rows a statement removes: short transactions, no long lock on a busy table


async def prune_once(db: Database, settings: Settings, now: datetime | None = None) -> bool:
    """One batch from each table; True if a table had more (the caller runs it again at once)."""
    before = (now or datetime.now(UTC)) - timedelta(days=settings.notifications_retention_days)
    more = False
    for table in PRUNED_TABLES:
        pruned = await db.run(partial(_prune, table, before))
        if pruned:
            metrics.PRUNED.labels(table).inc(pruned)
            log.info("notifications.pruned", table=table, rows=pruned, before=before.isoformat())
        more = more or pruned == PRUNE_BATCH
    return more


async def _prune(table: str, before: datetime, conn: asyncpg.Connection) -> int:
    return await Retention(conn).prune(table, before, PRUNE_BATCH)
