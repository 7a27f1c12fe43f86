"""Disputes on real PostgreSQL: open on one's own entry only, one open per entry, resolved exactly once
(also when two operators resolve at the same moment), and nothing changes on any refusal."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from libs.ledger.store import InsufficientBalance, LedgerStore
from libs.platform.db import Database
from libs.platform.errors import DomainError
from libs.platform.settings import Settings
from services.points.dispute_store import DisputeStore
from services.points.disputes import open_dispute, resolve_dispute
from services.points.domain.disputes import DisputeOpen, DisputeResolved, Outcome, Resolution, Status
from services.points.handlers import adjust, reconcile


def rider() -> str:
    return f"rider-d-{uuid.uuid4().hex[:10]}"


async def entry_of(db: Database, settings: Settings, rider_id: str, amount: int = 10) -> int:
    return (await adjust(db, settings, "ops-seed", uuid.uuid4().hex, rider_id, amount, "补发")).entry_id


async def balance(db: Database, rider_id: str) -> int:
    async with db.read() as conn:
        return (await LedgerStore(conn).balance(rider_id)).available


async def test_a_rider_opens_a_dispute_on_its_own_entry_and_a_retry_is_the_same(
    db: Database, settings: Settings
) -> None:
    r = rider()
    entry = await entry_of(db, settings, r)
    first = await open_dispute(db, settings, r, "k1", entry, "只记了一刻钟")
    again = await open_dispute(db, settings, r, "k1", entry, "只记了一刻钟")
    assert first.created
    assert not again.created
    assert again.dispute == first.dispute
    assert first.dispute.status is Status.OPEN
    with pytest.raises(DomainError) as reused:
        await open_dispute(db, settings, r, "k1", entry, "另一句话")
    assert reused.value.kind == "idempotency-key-reused"


async def test_another_riders_entry_or_an_unknown_one_is_not_found(db: Database, settings: Settings) -> None:
    owner, other = rider(), rider()
    entry = await entry_of(db, settings, owner)
    for entry_id in (entry, 2**62):
        with pytest.raises(DomainError) as unknown:
            await open_dispute(db, settings, other, uuid.uuid4().hex, entry_id, "不对")
        assert unknown.value.kind == "entry-unknown"
    async with db.read() as conn:
        assert await DisputeStore(conn).page(other, None, None, 10) == []


async def test_a_second_open_dispute_on_an_entry_is_refused_until_the_first_is_resolved(
    db: Database, settings: Settings
) -> None:
    r = rider()
    entry = await entry_of(db, settings, r)
    first = await open_dispute(db, settings, r, "a", entry, "不对")
    with pytest.raises(DisputeOpen):
        await open_dispute(db, settings, r, "b", entry, "还是不对")
    await resolve_dispute(
        db, settings, "ops-1", "r", first.dispute.dispute_id, Resolution(Outcome.REJECTED, None, "记录无误")
    )
    second = await open_dispute(db, settings, r, "b", entry, "还是不对")
    assert second.created


async def test_two_operators_at_the_same_moment_resolve_it_once(db: Database, settings: Settings) -> None:
    r = rider()
    entry = await entry_of(db, settings, r, 5)
    opened = await open_dispute(db, settings, r, "k", entry, "三个小时只给了五分")
    dispute_id = opened.dispute.dispute_id
    results = await asyncio.gather(
        *(
            resolve_dispute(db, settings, f"ops-{n}", f"key-{n}", dispute_id, Resolution(Outcome.UPHELD, 20, "补足"))
            for n in range(8)
        ),
        return_exceptions=True,
    )
    resolved = [x for x in results if not isinstance(x, BaseException)]
    refused = [x for x in results if isinstance(x, BaseException)]
    assert len(resolved) == 1, results
    assert all(isinstance(x, DisputeResolved) for x in refused), results
    assert await balance(db, r) == 25
    winner = resolved[0]
    assert winner.adjustment_entry_id is not None
    async with db.read() as conn:
        adjustment = await LedgerStore(conn).entry(winner.adjustment_entry_id)
    assert adjustment is not None
    assert adjustment.amount == 20
    assert adjustment.source == "warmbee/disputes"
    assert adjustment.reason.code == "adjustment.dispute_upheld"
    # The same operator's same request again is the resolution, not a second one.
    n = int(str(winner.resolved_by).removeprefix("ops-"))
    again = await resolve_dispute(
        db, settings, f"ops-{n}", f"key-{n}", dispute_id, Resolution(Outcome.UPHELD, 20, "补足")
    )
    assert again == winner
    assert await balance(db, r) == 25
    report = await reconcile(db, settings.reconcile_stuck_after_s)
    check = next(c for c in report.checks if "dispute" in c.name)
    assert check.ok, check.problems


async def test_an_upheld_debit_beyond_the_available_points_changes_nothing(db: Database, settings: Settings) -> None:
    r = rider()
    entry = await entry_of(db, settings, r, 10)
    opened = await open_dispute(db, settings, r, "k", entry, "多给了？")
    with pytest.raises(InsufficientBalance):
        await resolve_dispute(
            db, settings, "ops-1", "r", opened.dispute.dispute_id, Resolution(Outcome.UPHELD, -11, "收回")
        )
    async with db.read() as conn:
        still = await DisputeStore(conn).get(opened.dispute.dispute_id)
    assert still is not None
    assert still.status is Status.OPEN
    assert await balance(db, r) == 10
    done = await resolve_dispute(
        db, settings, "ops-1", "r2", opened.dispute.dispute_id, Resolution(Outcome.UPHELD, -10, "收回")
    )
    assert done.amount == -10
    assert await balance(db, r) == 0


async def test_an_unknown_dispute_is_not_found(db: Database, settings: Settings) -> None:
    with pytest.raises(DomainError) as unknown:
        await resolve_dispute(db, settings, "ops-1", "r", "dsp_" + "0" * 32, Resolution(Outcome.REJECTED, None, "x"))
    assert unknown.value.kind == "dispute-unknown"
