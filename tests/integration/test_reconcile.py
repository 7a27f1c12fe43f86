"""Reconcile finds what does not add up, and its checks, run side by side on two connections, read one
snapshot: the first connection's, exported to the second."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from libs.ledger.store import LedgerStore
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.points.handlers import reconcile
from services.points.queries import ReconcileStore, _snapshot_id
from tests.lots import lot_credit

CHECKS = [
    "every transaction's postings sum to zero",
    "every rider's postings sum to the projected balance and the history",
    "no rider account is ever negative at any point of its history",
]


@pytest.fixture
async def owner(db: Database, settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.owner_database_url)
    yield conn
    await conn.close()


def _rider() -> str:
    return f"rider-rec-{uuid.uuid4().hex[:10]}"


async def _credited(db: Database, points: int) -> str:
    rider = _rider()
    # An operator's credit (no lot): it needs no stored event, so the suite's database stays reconciled.
    await db.run(lambda conn: LedgerStore(conn).append([lot_credit(rider, points, None)]))
    return rider


@pytest.mark.parametrize("connections", [1, 2])
async def test_a_balance_that_disagrees_with_its_postings_is_found_and_named(
    db: Database, owner: asyncpg.Connection, connections: int
) -> None:
    """The owner (bypassing the services' grants) adds 5 to a rider's projected balance: the projection
    check names that rider with both figures, whether the checks ran on one connection or on two; the
    report keeps its fixed order."""
    rider = await _credited(db, 10)
    await owner.execute("UPDATE rider_balance SET available = available + 5 WHERE rider_id = $1", rider)
    try:
        report = await reconcile(db, 3600, connections)
    finally:
        await owner.execute("UPDATE rider_balance SET available = available - 5 WHERE rider_id = $1", rider)
    assert [c.name for c in report.checks[:3]] == CHECKS
    assert len(report.checks) == 10
    projection = report.checks[1]
    named = [p for p in projection.problems if rider in p]
    assert named == [
        f"rider {rider}: balance says available 15 held 0, postings say 10 and 0, history amounts sum to 10"
    ]
    assert not report.ok
    assert "NOT reconciled" in report.lines()[-1]
    again = await reconcile(db, 3600, connections)
    assert not [p for p in again.checks[1].problems if rider in p]  # mended: that rider adds up again


async def test_a_second_connection_reads_the_first_ones_snapshot_not_a_later_commit(
    db: Database, owner: asyncpg.Connection
) -> None:
    rider = await _credited(db, 7)
    async with db.read() as lead, lead.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await ReconcileStore(lead).export_snapshot()
        await db.run(lambda conn: LedgerStore(conn).append([lot_credit(rider, 3, None)]))  # committed after the export
        async with db.read() as other, other.transaction():
            await ReconcileStore(other).adopt_snapshot(snapshot)
            seen = await other.fetchval("SELECT available FROM rider_balance WHERE rider_id = $1", rider)
        now = await owner.fetchval("SELECT available FROM rider_balance WHERE rider_id = $1", rider)
    assert (seen, now) == (7, 10)


@pytest.mark.parametrize("bad", ["", "x'; DROP TABLE ledger_posting; --", "00000003-0000001B-1 "])
def test_only_a_snapshot_id_of_postgresql_is_spliced_into_the_statement(bad: str) -> None:
    with pytest.raises(ValueError, match="not a snapshot id"):
        _snapshot_id(bad)
    assert _snapshot_id("00000003-0000001B-1") == "00000003-0000001B-1"
