"""Reconcile finds what does not add up, and its checks, run side by side on two connections, read one
snapshot: the first connection's, exported to the second."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

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
        snapshot, _ = await ReconcileStore(lead).export_snapshot()
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


async def test_a_scoped_run_checks_what_changed_and_finds_a_touched_riders_mismatch(
    db: Database, owner: asyncpg.Connection
) -> None:
    """After a whole run, a run over what changed since it examines only the entries recorded since, and
    still names a rider of those entries whose balance disagrees. A rider with no entry since is the
    whole run's to find (the daily one); the scoped run does not look at that rider."""
    untouched = await _credited(db, 4)
    whole = await reconcile(db, 3600)  # the suite's other tests may leave their own mismatches: not these riders'
    assert whole.as_of is not None
    assert not [p for c in whole.checks for p in c.problems if untouched in p]
    touched = await _credited(db, 10)
    await owner.execute(
        "UPDATE rider_balance SET available = available + 5 WHERE rider_id = ANY($1::text[])", [touched, untouched]
    )
    try:
        scoped = await reconcile(db, 3600, since=whole.as_of)
        again = await reconcile(db, 3600)
    finally:
        await owner.execute(
            "UPDATE rider_balance SET available = available - 5 WHERE rider_id = ANY($1::text[])", [touched, untouched]
        )
    assert scoped.since == whole.as_of
    assert [c.name for c in scoped.checks] == [c.name for c in whole.checks]
    assert scoped.checks[0].examined == 1  # the one entry recorded since
    assert scoped.checks[0].examined < whole.checks[0].examined
    assert [p for p in scoped.checks[1].problems if touched in p]
    assert not [p for p in scoped.checks[1].problems if untouched in p]
    assert [p for p in again.checks[1].problems if untouched in p]


async def test_a_scoped_run_from_before_the_first_entry_is_the_whole_run(db: Database) -> None:
    """Every check's scoped statement covers what its whole statement does when everything changed since:
    the same problems, and the same counts examined where the scope is the whole ledger's."""
    await _credited(db, 3)
    whole = await reconcile(db, 3600)
    scoped = await reconcile(db, 3600, since=datetime(2000, 1, 1, tzinfo=UTC))
    assert [(c.name, list(c.problems)) for c in scoped.checks] == [(c.name, list(c.problems)) for c in whole.checks]
    same = {0, 3, 4, 5, 6, 7, 8}  # transactions, awards, redemptions, events, disputes, lots, lot links
    assert [c.examined for n, c in enumerate(scoped.checks) if n in same] == [
        c.examined for n, c in enumerate(whole.checks) if n in same
    ]
