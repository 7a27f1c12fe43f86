"""The points report's query against PostgreSQL: the sums of each column by category, rider and day, the
Asia/Shanghai day boundaries, and paging. Its entries are recorded in 2031, a year nothing else records
in (the other tests record at now()), with the recorded times set as the report reads them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from libs.ledger.keys import partner_redeemed, rider_available, rider_held
from libs.platform.db import Database
from services.points.domain.reports import By, PointsRow, period_of
from services.points.reports import ReportQueries

TAG = uuid.uuid4().hex[:8]
ALICE, BOB = f"rep-{TAG}-alice", f"rep-{TAG}-bob"


async def record(
    conn: asyncpg.Connection,
    kind: str,
    rider: str,
    amount: int,
    at: datetime,
    category: str | None = None,
    event_id: str | None = None,
) -> None:
    """An entry recorded at ``at``: an award or adjustment moves ``amount`` into the rider's available
    points, a redeem moves it from held to a partner (what the ledger writer posts for each)."""
    delta = 0 if kind == "redeem" else amount
    tx = await conn.fetchval(
        "INSERT INTO ledger_transaction (idempotency_key, input_hash, kind, rider_id, available_delta, category,"
        " source, event_id, reason, recorded_at) VALUES ($1, 'test', $2, $3, $4, $5, 'test', $6, 'test', $7)"
        " RETURNING tx_id",
        f"rep:{uuid.uuid4().hex}",
        kind,
        rider,
        delta,
        category,
        event_id,
        at,
    )
    if amount == 0:
        return
    source, destination = (
        (rider_held(rider), partner_redeemed("rep-partner"))
        if kind == "redeem"
        else ("programme:awards", rider_available(rider))
    )
    await conn.execute(
        "INSERT INTO ledger_posting (tx_id, posting_no, account, amount) VALUES ($1, 1, $2, $3), ($1, 2, $4, $5)",
        tx,
        source,
        -amount,
        destination,
        amount,
    )


@pytest.fixture(scope="module")
async def entries(db: Database) -> None:
    async with db.read() as conn, conn.transaction():
        # 2031-03-01 in Shanghai runs from 2031-02-28T16:00Z to 2031-03-01T16:00Z.
        await record(conn, "award", ALICE, 10, datetime(2031, 2, 28, 15, 59, tzinfo=UTC), "safe_riding", "e0")  # Feb
        await record(conn, "award", ALICE, 20, datetime(2031, 2, 28, 16, 0, tzinfo=UTC), "safe_riding", "e1")
        await record(conn, "award", ALICE, 0, datetime(2031, 3, 1, 8, tzinfo=UTC), "safe_riding", "e2")  # capped
        await record(conn, "award", BOB, 15, datetime(2031, 3, 1, 23, 30, tzinfo=UTC), "volunteer_service", "e3")
        await record(conn, "adjustment", BOB, -4, datetime(2031, 3, 2, 1, tzinfo=UTC))
        await record(conn, "adjustment", ALICE, 7, datetime(2031, 3, 2, 2, tzinfo=UTC))
        await record(conn, "redeem", ALICE, 12, datetime(2031, 3, 2, 3, tzinfo=UTC), "redemption", "r1")
        await record(conn, "award", BOB, 99, datetime(2031, 3, 3, 16, 0, tzinfo=UTC), "honors", "e4")  # 03-04


async def report(db: Database, by: By, after: str | None = None, limit: int | None = None) -> list[PointsRow]:
    async with db.read() as conn:
        return await ReportQueries(conn).points(period_of("2031-03-01", "2031-03-03"), by, after, limit)


@pytest.mark.usefixtures("entries")
async def test_by_day_an_entry_at_23_30_utc_belongs_to_the_next_shanghai_day(db: Database) -> None:
    assert await report(db, By.DAY) == [
        PointsRow("2031-03-01", 20, 0, 0, 0, 2),
        PointsRow("2031-03-02", 15, 3, 12, 0, 1),  # Bob's award at 23:30 UTC on 03-01
    ]


@pytest.mark.usefixtures("entries")
@pytest.mark.usefixtures("entries")
async def test_by_day_pages_by_day(db: Database) -> None:
    assert [r.key for r in await report(db, By.DAY, None, 1)] == ["2031-03-01"]
    assert [r.key for r in await report(db, By.DAY, "2031-03-01", 1)] == ["2031-03-02"]
    assert await report(db, By.DAY, "2031-03-02", 1) == []


@pytest.mark.usefixtures("entries")
async def test_by_category_redeemed_points_count_positive_and_adjustments_have_no_category(db: Database) -> None:
    assert await report(db, By.CATEGORY) == [
        PointsRow("none", 0, 3, 0, 0, 0),
        PointsRow("redemption", 0, 0, 12, 0, 0),
        PointsRow("safe_riding", 20, 0, 0, 0, 2),  # the zero-point award is an event all the same
        PointsRow("volunteer_service", 15, 0, 0, 0, 1),
    ]


@pytest.mark.usefixtures("entries")
async def test_by_rider_pages_by_rider_id(db: Database) -> None:
    everyone = [r for r in await report(db, By.RIDER)]
    assert everyone == [PointsRow(ALICE, 20, 7, 12, 0, 2), PointsRow(BOB, 15, -4, 0, 0, 1)]
    first = await report(db, By.RIDER, None, 1)
    assert first == everyone[:1]
    assert await report(db, By.RIDER, first[-1].key, 1) == everyone[1:]
    assert await report(db, By.RIDER, BOB, 1) == []


async def test_the_report_reads_the_entry_time_index(db: Database) -> None:
    async with db.read() as conn:
        indexes = await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'ledger_transaction'")
    assert any("(recorded_at)" in r["indexdef"] for r in indexes)
