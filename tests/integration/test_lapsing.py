"""Lots and the lapse job on real PostgreSQL: soonest-lapsing first, a release back to the same lots, a
held lot not lapsed until its hold ends, each lot lapsed once (also with two jobs at once and a hold
racing the job), never below zero, and reconcile clean after each."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, rider_available
from libs.ledger.lot_store import LotStore
from libs.ledger.model import EntryKind, LedgerTransaction, LotTerms, transfer
from libs.ledger.store import InsufficientBalance, LedgerStore
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.points.domain.lapsing import today
from services.points.handlers import adjust, reconcile
from services.points.lapsing import lapse_due, lapse_page, warn_riders
from services.redemption.domain.holds import Resolution, hold_entry, resolution_entry

TODAY = today(datetime.now(UTC))
PAST = TODAY - timedelta(days=1)  # a lot good until yesterday is due today


def rider() -> str:
    return f"rider-l-{uuid.uuid4().hex[:10]}"


def credit(
    rider_id: str, amount: int, lapses_on: date | None, awarded_on: date = date(2025, 1, 1)
) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=f"adjustment:test:{uuid.uuid4().hex}",
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider_id,
        reason=Reason.of("adjustment", note="seed"),
        postings=transfer(PROGRAMME_ADJUSTMENTS, rider_available(rider_id), amount),
        actor="test",
        lot=LotTerms(date(2025, 1, 1), lapses_on) if lapses_on else None,
    )


async def append(db: Database, *txs: LedgerTransaction) -> dict[str, int]:
    return (await db.run(lambda conn: LedgerStore(conn).append(list(txs)))).recorded


async def lots_of(db: Database, rider_id: str) -> list[tuple[date, int, int, bool]]:
    """(lapses_on, remaining, held, lapsed) of the rider's lots, soonest first."""
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT lapses_on, remaining, held, lapse_tx_id IS NOT NULL AS lapsed FROM ledger_lot"
            " WHERE rider_id = $1 ORDER BY lapses_on, lot_id",
            rider_id,
        )
    return [(r["lapses_on"], r["remaining"], r["held"], r["lapsed"]) for r in rows]


async def balance(db: Database, rider_id: str) -> tuple[int, int]:
    async with db.read() as conn:
        b = await LedgerStore(conn).balance(rider_id)
    return b.available, b.held


def hold(rider_id: str, redemption_id: str, cost: int) -> LedgerTransaction:
    return hold_entry(redemption_id, rider_id, cost, "理发券", "街角理发", "reward-1")


def settle(rider_id: str, redemption_id: str, cost: int, action: Resolution) -> LedgerTransaction:
    return resolution_entry(redemption_id, rider_id, cost, "理发券", "partner-1", action, None)


async def assert_reconciled(db: Database) -> None:
    report = await reconcile(db, 3600)
    assert report.ok, report.lines()


async def test_holds_take_the_soonest_lapsing_lot_and_a_cancel_gives_back_to_the_same_lots(
    db: Database, settings: Settings
) -> None:
    r = rider()
    soon, late = TODAY + timedelta(days=40), TODAY + timedelta(days=400)
    await append(db, credit(r, 30, late), credit(r, 20, soon), credit(r, 15, None))
    await append(db, hold(r, f"{r}-a", 25))
    assert await lots_of(db, r) == [(soon, 20, 20, False), (late, 30, 5, False)]
    await append(db, settle(r, f"{r}-a", 25, Resolution.CANCEL))
    assert await lots_of(db, r) == [(soon, 20, 0, False), (late, 30, 0, False)]
    await append(db, hold(r, f"{r}-b", 60))  # all 50 in lots, then 10 of the 15 in none
    await append(db, settle(r, f"{r}-b", 60, Resolution.CONFIRM))
    assert await lots_of(db, r) == [(soon, 0, 0, False), (late, 0, 0, False)]
    assert await balance(db, r) == (5, 0)
    await assert_reconciled(db)


async def test_a_negative_adjustment_takes_soonest_first_and_the_balance_lists_the_next_days(
    db: Database, settings: Settings
) -> None:
    r = rider()
    days = [TODAY + timedelta(days=n) for n in (10, 20, 30, 40)]
    await append(db, *(credit(r, 10, d) for d in days))
    await adjust(db, settings, "ops-1", uuid.uuid4().hex, r, -15, "扣回")
    async with db.read() as conn:
        lapsing = (await LotStore(conn).lapsing([r]))[r]
        balance, in_one = await LedgerStore(conn).balance_and_lapsing(r)  # the balance route's one statement
        nobody = await LedgerStore(conn).balance_and_lapsing(rider())
    assert [(x.on, x.points) for x in lapsing] == [(days[1], 5), (days[2], 10), (days[3], 10)]
    assert in_one == lapsing
    assert (balance.available, balance.held, balance.as_of is not None) == (25, 0, True)
    assert (nobody[0].available, nobody[0].as_of, nobody[1]) == (0, None, [])
    await assert_reconciled(db)


async def test_the_lapse_job_lapses_what_is_left_once_and_never_a_lot_not_yet_due(
    db: Database, settings: Settings
) -> None:
    r = rider()
    await append(db, credit(r, 30, PAST), credit(r, 40, TODAY), credit(r, 7, None))
    await adjust(db, settings, "ops-1", uuid.uuid4().hex, r, -12, "扣回")  # 12 of the due lot's 30
    await lapse_due(db, settings)
    await lapse_due(db, settings)  # again: nothing more
    assert await lots_of(db, r) == [(PAST, 0, 0, True), (TODAY, 40, 0, False)]
    assert await balance(db, r) == (47, 0)
    async with db.read() as conn:
        entries = await LedgerStore(conn).entries(r, 10)
    lapses = [e for e in entries if e.kind == "lapse"]
    assert [(e.amount, e.reason.code) for e in lapses] == [(-18, "lapse")]
    assert (
        lapses[0].reason.render("zh").endswith(f"剩余 18 分，有效期至 {PAST.year}年{PAST.month}月{PAST.day}日，已过期")
    )
    await assert_reconciled(db)


async def test_a_held_lot_lapses_only_when_its_hold_ends_with_the_points_given_back(
    db: Database, settings: Settings
) -> None:
    r = rider()
    await append(db, credit(r, 30, PAST))
    await append(db, hold(r, f"{r}-h", 10))
    await lapse_due(db, settings)
    assert await lots_of(db, r) == [(PAST, 30, 10, False)]  # held points do not lapse while held
    await append(db, settle(r, f"{r}-h", 10, Resolution.EXPIRE))
    await lapse_due(db, settings)
    assert await lots_of(db, r) == [(PAST, 0, 0, True)]
    assert await balance(db, r) == (0, 0)
    await assert_reconciled(db)


async def test_two_lapse_jobs_at_once_lapse_each_lot_once(db: Database, settings: Settings) -> None:
    riders = [rider() for _ in range(20)]
    await append(db, *(credit(r, 5 + i, PAST) for i, r in enumerate(riders)))
    await asyncio.gather(*(lapse_page(db, settings, TODAY, limit=10_000) for _ in range(4)))
    async with db.read() as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'lapse' AND rider_id = ANY($1::text[])", riders
        )
    assert n == len(riders)
    assert [await balance(db, r) for r in riders] == [(0, 0)] * len(riders)
    await assert_reconciled(db)


async def test_concurrent_holds_on_the_same_lots_never_take_more_than_they_hold(
    db: Database, settings: Settings
) -> None:
    r = rider()
    await append(db, credit(r, 30, TODAY + timedelta(days=3)), credit(r, 40, TODAY + timedelta(days=9)))

    async def try_hold(n: int) -> bool:
        try:
            await append(db, hold(r, f"{r}-{n}", 10))
        except InsufficientBalance:
            return False
        return True

    won = await asyncio.gather(*(try_hold(n) for n in range(12)))
    assert sum(won) == 7
    assert [(remaining, held) for _, remaining, held, _ in await lots_of(db, r)] == [(30, 30), (40, 40)]
    await assert_reconciled(db)


@pytest.mark.parametrize("first", ["hold", "lapse"])
async def test_the_lapse_job_racing_a_hold_either_lapses_or_lets_the_hold_have_it(
    db: Database, settings: Settings, first: str
) -> None:
    r = rider()
    await append(db, credit(r, 30, PAST))

    async def try_hold() -> bool:
        if first == "lapse":
            await asyncio.sleep(0.005)
        try:
            await append(db, hold(r, f"{r}-race", 30))
        except InsufficientBalance:
            return False
        return True

    held, _ = await asyncio.gather(try_hold(), lapse_page(db, settings, TODAY, limit=10_000))
    lots = await lots_of(db, r)
    assert lots == ([(PAST, 30, 30, False)] if held else [(PAST, 0, 0, True)])
    assert await balance(db, r) == ((0, 30) if held else (0, 0))
    await assert_reconciled(db)


async def test_riders_are_warned_once_per_day_of_what_lapses_within_30_days(db: Database, settings: Settings) -> None:
    r = rider()
    soon = TODAY + timedelta(days=20)
    await append(db, credit(r, 30, soon), credit(r, 12, soon), credit(r, 5, TODAY + timedelta(days=45)))
    await warn_riders(db, settings)
    await warn_riders(db, settings)
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT value FROM outbox WHERE topic = $1 AND key = $2 ORDER BY outbox_id",
            settings.topic_points_ledger,
            r.encode(),
        )
    warnings = [bytes(row["value"]) for row in rows]
    assert len(warnings) == 1
    assert b'"points":42' in warnings[0]
    assert soon.isoformat().encode() in warnings[0]
