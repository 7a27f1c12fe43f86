"""Run every reconciliation check in one read-only, repeatable-read snapshot of the database."""

from __future__ import annotations

from libs.platform.db import Connection, Database
from services.reconcile.domain import Report
from services.reconcile.store import ReconcileStore


async def reconcile(db: Database, stuck_after_s: int) -> Report:
    async def work(conn: Connection) -> Report:
        # One snapshot for all checks, so a write between two of them cannot look like a mismatch.
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        store = ReconcileStore(conn)
        return Report(
            [
                await store.balanced_transactions(),
                await store.projection_matches_postings(),
                await store.never_negative(),
                await store.awards_are_grounded(),
                await store.redemptions_match_entries(),
                await store.accepted_events_settled(stuck_after_s),
            ]
        )

    return await db.run(work)
