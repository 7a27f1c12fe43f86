"""The ledger on real PostgreSQL: append-only, double-entry, integer points, idempotent by key,
and a rider's available balance never below zero, whatever the concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncpg
import pytest

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, PROGRAMME_ISSUED, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, transfer
from libs.ledger.store import AppendResult, Balance, Entry, IdempotencyConflict, InsufficientBalance, LedgerStore
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.points.handlers import adjust
from tests.integration.factories import SOURCE, new_id

OPERATOR = "operator-1"


# --- factories -------------------------------------------------------------------------------------


def award(rider: str, points: int, key: str | None = None, event_id: str | None = None) -> LedgerTransaction:
    event_id = event_id or new_id("shift")
    return LedgerTransaction(
        idempotency_key=key or f"award:{SOURCE}:{event_id}",
        kind=EntryKind.AWARD,
        rider_id=rider,
        reason=Reason.of("legacy.text", text=f"{points} points for a verified volunteer shift"),
        postings=transfer(PROGRAMME_ISSUED, rider_available(rider), points),
        category="volunteer_service",
        source=SOURCE,
        event_id=event_id,
        rule_id="warmbee-default",
        rule_version=1,
    )


def adjustment(rider: str, amount: int) -> LedgerTransaction:
    source, destination = PROGRAMME_ADJUSTMENTS, rider_available(rider)
    if amount < 0:
        source, destination = destination, source
    return LedgerTransaction(
        idempotency_key=f"adjustment:{OPERATOR}:{uuid.uuid4()}",
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider,
        reason=Reason.of("legacy.text", text="correction of a double-counted shift"),
        postings=transfer(source, destination, abs(amount)),
        actor=OPERATOR,
    )


async def append(db: Database, *txs: LedgerTransaction) -> AppendResult:
    return await db.run(lambda conn: LedgerStore(conn).append(list(txs)))


async def balance(db: Database, rider: str) -> Balance:
    async with db.read() as conn:
        return await LedgerStore(conn).balance(rider)


async def entries(db: Database, rider: str) -> list[Entry]:
    async with db.read() as conn:
        return await LedgerStore(conn).entries(rider, limit=100)


async def postings_of(db: Database, tx_id: int) -> list[tuple[str, int]]:
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT account, amount FROM ledger_posting WHERE tx_id = $1 ORDER BY posting_no", tx_id
        )
    return [(r["account"], r["amount"]) for r in rows]


async def rolled_back(db: Database, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> None:
    """Run ``work`` in a transaction that is always rolled back: a refusal test never changes the ledger,
    even when the refusal it expects is missing."""
    async with db.pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        transaction = conn.transaction()
        await transaction.start()
        try:
            await work(conn)
        finally:
            await transaction.rollback()


async def recorded_tx_id(db: Database, rider: str) -> int:
    tx = award(rider, 20)
    return (await append(db, tx)).recorded[tx.idempotency_key]


# --- appending -------------------------------------------------------------------------------------


async def test_an_award_records_its_postings_and_moves_the_balance(db: Database, rider: str) -> None:
    tx = award(rider, 25)

    result = await append(db, tx)

    tx_id = result.recorded[tx.idempotency_key]
    assert result.existing == {}
    assert await postings_of(db, tx_id) == [(PROGRAMME_ISSUED, -25), (f"rider:{rider}:available", 25)]
    b = await balance(db, rider)
    assert (b.available, b.held, b.earned_total, b.redeemed_total) == (25, 0, 25, 0)


async def test_entries_are_listed_newest_first_with_amount_reason_rule_and_event(db: Database, rider: str) -> None:
    first, second = award(rider, 25), award(rider, 10)
    await append(db, first)
    await append(db, second)

    listed = await entries(db, rider)

    assert [e.amount for e in listed] == [10, 25]
    newest = listed[0]
    assert newest.kind == "award"
    assert newest.reason == second.reason
    assert (newest.rule_id, newest.rule_version) == ("warmbee-default", 1)
    assert (newest.source, newest.event_id) == (SOURCE, second.event_id)
    assert newest.category == "volunteer_service"


async def test_a_zero_point_award_is_recorded_without_postings_and_listed_with_amount_0(
    db: Database, rider: str
) -> None:
    tx = award(rider, 0)
    assert tx.postings == ()

    result = await append(db, tx)

    tx_id = result.recorded[tx.idempotency_key]
    assert await postings_of(db, tx_id) == []
    [entry] = await entries(db, rider)
    assert (entry.entry_id, entry.amount, entry.reason) == (tx_id, 0, tx.reason)
    assert (await balance(db, rider)).available == 0


async def test_the_same_key_with_the_same_inputs_is_recorded_once_and_reported_as_existing(
    db: Database, rider: str
) -> None:
    tx = award(rider, 25)
    first = await append(db, tx)

    again = await append(db, tx)

    assert again.recorded == {}
    assert again.existing == {tx.idempotency_key: first.recorded[tx.idempotency_key]}
    assert (await balance(db, rider)).available == 25
    assert len(await entries(db, rider)) == 1


async def test_the_same_key_with_other_inputs_raises_a_conflict_and_writes_nothing(db: Database, rider: str) -> None:
    original = award(rider, 25)
    await append(db, original)
    reused = award(rider, 40, key=original.idempotency_key, event_id=original.event_id)
    unrelated = award(rider, 10)

    with pytest.raises(IdempotencyConflict):
        await append(db, unrelated, reused)

    assert (await balance(db, rider)).available == 25
    assert [e.amount for e in await entries(db, rider)] == [25]


async def test_a_negative_adjustment_within_available_debits_it(db: Database, rider: str) -> None:
    await append(db, award(rider, 30))

    await append(db, adjustment(rider, -20))

    assert (await balance(db, rider)).available == 10
    assert [e.amount for e in await entries(db, rider)] == [-20, 30]


async def test_a_negative_adjustment_beyond_available_raises_and_rolls_back(db: Database, rider: str) -> None:
    await append(db, award(rider, 30))
    overdraft = adjustment(rider, -50)

    with pytest.raises(InsufficientBalance):
        await append(db, overdraft)

    assert (await balance(db, rider)).available == 30
    assert [e.amount for e in await entries(db, rider)] == [30]
    async with db.read() as conn:
        assert await LedgerStore(conn).entry_by_key(overdraft.idempotency_key) is None


# --- what the database itself refuses, even to the owner (the services' role is refused by privilege
# before these triggers: tests/integration/test_privileges.py) -------------------------------------


@pytest.mark.parametrize("table", ["ledger_posting", "ledger_transaction"])
async def test_the_database_refuses_to_update_ledger_rows(owner_db: Database, rider: str, table: str) -> None:
    tx_id = await recorded_tx_id(owner_db, rider)
    column = "amount = amount + 1" if table == "ledger_posting" else "reason = 'rewritten'"

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await rolled_back(owner_db, lambda conn: conn.execute(f"UPDATE {table} SET {column} WHERE tx_id = $1", tx_id))


@pytest.mark.parametrize("table", ["ledger_posting", "ledger_transaction"])
async def test_the_database_refuses_to_delete_ledger_rows(owner_db: Database, rider: str, table: str) -> None:
    tx_id = await recorded_tx_id(owner_db, rider)

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await rolled_back(owner_db, lambda conn: conn.execute(f"DELETE FROM {table} WHERE tx_id = $1", tx_id))


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("TRUNCATE ledger_posting", "append-only"),
        ("TRUNCATE ledger_transaction CASCADE", "append-only"),
        # Disputes (0017) reference entries: a TRUNCATE of the ledger alone is refused before the trigger.
        ("TRUNCATE ledger_transaction", "append-only|referenced in a foreign key constraint"),
    ],
)
async def test_the_database_refuses_to_truncate_the_ledger(
    owner_db: Database, rider: str, statement: str, refusal: str
) -> None:
    await recorded_tx_id(owner_db, rider)

    with pytest.raises(asyncpg.PostgresError, match=refusal):
        await rolled_back(owner_db, lambda conn: conn.execute(statement))


async def test_the_database_refuses_a_posting_whose_transaction_does_not_exist(db: Database) -> None:
    async def orphan(conn: asyncpg.Connection) -> None:
        missing = await conn.fetchval("SELECT coalesce(max(tx_id), 0) + 1000000 FROM ledger_transaction")
        await conn.execute(
            "INSERT INTO ledger_posting (tx_id, posting_no, account, amount)"
            " VALUES ($1, 1, 'programme:issued', -5), ($1, 2, 'rider:nobody:available', 5)",
            missing,
        )

    with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
        await rolled_back(db, orphan)


async def test_the_database_refuses_postings_that_do_not_sum_to_zero(db: Database, rider: str) -> None:
    async def unbalanced(conn: asyncpg.Connection) -> None:
        tx_id = await conn.fetchval(
            "INSERT INTO ledger_transaction (idempotency_key, input_hash, kind, rider_id, available_delta, reason)"
            " VALUES ($1, 'raw', 'award', $2, 10, 'raw insert') RETURNING tx_id",
            new_id("raw"),
            rider,
        )
        await conn.execute(
            "INSERT INTO ledger_posting (tx_id, posting_no, account, amount)"
            " VALUES ($1, 1, 'programme:issued', -5), ($1, 2, $2, 10)",
            tx_id,
            rider_available(rider),
        )

    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await rolled_back(db, unbalanced)

    assert refused.value.constraint_name == "ledger_posting_balanced"


# --- adjustments (services.points.handlers.adjust) ----------------------------------------------------


async def test_concurrent_debits_never_take_available_below_zero(db: Database, settings: Settings, rider: str) -> None:
    await append(db, award(rider, 100))

    results = await asyncio.gather(
        *(adjust(db, settings, OPERATOR, str(uuid.uuid4()), rider, -10, "correction") for _ in range(20)),
        return_exceptions=True,
    )

    succeeded = [r for r in results if isinstance(r, Entry)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert (len(succeeded), len(refused)) == (10, 10)
    assert (await balance(db, rider)).available == 0
    amounts_oldest_first = [e.amount for e in reversed(await entries(db, rider))]
    running = [sum(amounts_oldest_first[: i + 1]) for i in range(len(amounts_oldest_first))]
    assert min(running) >= 0
    async with db.read() as conn:
        posted = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM ledger_posting WHERE account = $1", rider_available(rider)
        )
    assert posted == (await balance(db, rider)).available == 0


async def test_an_adjustment_retried_with_the_same_key_and_body_is_posted_once(
    db: Database, settings: Settings, rider: str
) -> None:
    key = str(uuid.uuid4())

    first = await adjust(db, settings, OPERATOR, key, rider, 15, "missed shift on 2024-05-01")
    retried = await adjust(db, settings, OPERATOR, key, rider, 15, "missed shift on 2024-05-01")

    assert retried.entry_id == first.entry_id
    assert (first.amount, first.kind, first.actor) == (15, "adjustment", OPERATOR)
    assert (await balance(db, rider)).available == 15
    assert len(await entries(db, rider)) == 1


async def test_an_adjustment_key_reused_with_another_amount_is_a_conflict(
    db: Database, settings: Settings, rider: str
) -> None:
    key = str(uuid.uuid4())
    await adjust(db, settings, OPERATOR, key, rider, 15, "missed shift on 2024-05-01")

    with pytest.raises(IdempotencyConflict):
        await adjust(db, settings, OPERATOR, key, rider, 20, "missed shift on 2024-05-01")

    assert (await balance(db, rider)).available == 15
    assert len(await entries(db, rider)) == 1
