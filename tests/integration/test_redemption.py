"""Redemption on real PostgreSQL: reserve holds the cost, confirm pays it, cancel and expiry return it;
stock, monthly limits and the available balance hold whatever the concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.ledger.store import Balance, InsufficientBalance, LedgerStore
from libs.platform.db import Database
from libs.platform.settings import Settings
from services.points.handlers import adjust
from services.redemption.domain.catalogue import Partner, Reward
from services.redemption.domain.errors import Refused
from services.redemption.domain.holds import Redemption, month_of, new_code
from services.redemption.handlers import (
    Reserved,
    add_partner,
    cancel,
    confirm,
    expire_due,
    put_reward,
    reserve,
)
from services.redemption.queries import RedemptionQueries
from services.redemption.store import RedemptionStore

OPERATOR = "ops-test"


# --- factories and queries -------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def new_partner(db: Database) -> str:
    partner_id = new_id("p")
    await add_partner(db, Partner(partner_id, "老王面馆", "merchant"))
    return partner_id


async def new_reward(
    db: Database,
    partner_id: str,
    cost: int = 30,
    stock_per_month: int | None = None,
    per_rider_monthly_limit: int | None = None,
    active: bool = True,
) -> Reward:
    reward = Reward(new_id("rw"), partner_id, "午餐套餐", cost, stock_per_month, per_rider_monthly_limit, active)
    await put_reward(db, reward, create=True)
    return reward


async def catalogue_entry(db: Database, cost: int = 30, **limits: Any) -> Reward:
    """A partner and a reward of its own for the test."""
    return await new_reward(db, await new_partner(db), cost, **limits)


async def fund(db: Database, settings: Settings, rider: str, points: int) -> None:
    await adjust(db, settings, OPERATOR, new_id("grant"), rider, points, "test grant")


async def hold(
    db: Database,
    settings: Settings,
    rider: str,
    reward: Reward,
    key: str | None = None,
    expected_cost: int | None = None,
) -> Redemption:
    reserved = await reserve(db, settings, rider, reward.reward_id, key or new_id("key"), expected_cost)
    return reserved.redemption


async def balance(db: Database, rider: str) -> Balance:
    async with db.read() as conn:
        return await LedgerStore(conn).balance(rider)


async def points(db: Database, rider: str) -> tuple[int, int]:
    """(available, held)"""
    b = await balance(db, rider)
    return b.available, b.held


async def redemption(db: Database, redemption_id: str) -> Redemption:
    async with db.read() as conn:
        found = await RedemptionStore(conn).get(redemption_id)
    assert found is not None
    return found


async def redemptions_of(db: Database, rider: str) -> list[Redemption]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT redemption_id FROM redemption WHERE rider_id = $1", rider)
    return [await redemption(db, r["redemption_id"]) for r in rows]


async def ledger_kinds(db: Database, redemption_id: str) -> list[str]:
    """The ledger entries of one redemption, in order."""
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT kind FROM ledger_transaction WHERE event_id = $1 AND source = 'warmbee/redemption' ORDER BY tx_id",
            redemption_id,
        )
    return [r["kind"] for r in rows]


async def stock_left(db: Database, reward: Reward) -> int | None:
    async with db.read() as conn:
        items = await RedemptionQueries(conn).catalogue(month_of(datetime.now(UTC)))
    [item] = [i for i in items if i["reward_id"] == reward.reward_id]
    left: int | None = item["stock_left"]
    return left


async def failures(db: Database, settings: Settings, partner_id: str) -> int:
    async with db.read() as conn:
        return await RedemptionStore(conn).failures(partner_id, settings.confirm_failure_window_s)


async def posting_sums(db: Database, rider: str) -> tuple[int, int]:
    """(available, held) as the sums of the rider's ledger postings."""
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT account, sum(amount) AS total FROM ledger_posting WHERE account = ANY($1::text[]) GROUP BY account",
            [f"rider:{rider}:available", f"rider:{rider}:held"],
        )
    sums = {r["account"]: int(r["total"]) for r in rows}
    return sums.get(f"rider:{rider}:available", 0), sums.get(f"rider:{rider}:held", 0)


async def refusal_of(call: Awaitable[Any]) -> tuple[int, str]:
    """(status, kind) of the Refused that ``call`` raises."""
    with pytest.raises(Refused) as refused:
        await call
    return refused.value.status, refused.value.kind


async def wait_past(moment: datetime) -> None:
    await asyncio.sleep(max((moment - datetime.now(UTC)).total_seconds(), 0) + 0.2)


def short_ttl(settings: Settings) -> Settings:
    return settings.model_copy(update={"redemption_hold_ttl_s": 1})


# --- reserve ---------------------------------------------------------------------------------------


async def test_a_reserve_holds_the_cost_available_down_held_up(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)

    r = await hold(db, settings, rider, reward)

    assert (r.status, r.cost, r.rider_id, r.partner_id) == ("held", 30, rider, reward.partner_id)
    assert len(r.code) == 8
    assert r.expires_at - r.created_at == timedelta(hours=24)
    assert await points(db, rider) == (20, 30)
    assert await ledger_kinds(db, r.redemption_id) == ["hold"]


async def test_the_same_idempotency_key_twice_returns_the_same_redemption_and_holds_once(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 100)

    first = await reserve(db, settings, rider, reward.reward_id, "key-1", None)
    again = await reserve(db, settings, rider, reward.reward_id, "key-1", None)

    assert (first.replayed, again.replayed) == (False, True)
    assert again.redemption == first.redemption
    assert await points(db, rider) == (70, 30)
    assert len(await redemptions_of(db, rider)) == 1


async def test_the_same_idempotency_key_twice_at_once_holds_once(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 100)

    both = await asyncio.gather(*(reserve(db, settings, rider, reward.reward_id, "key-1", None) for _ in range(2)))

    assert both[0].redemption.redemption_id == both[1].redemption.redemption_id
    assert sorted(r.replayed for r in both) == [False, True]
    assert await points(db, rider) == (70, 30)


async def test_the_same_idempotency_key_for_another_reward_is_refused(
    db: Database, settings: Settings, rider: str
) -> None:
    lunch = await catalogue_entry(db, cost=30)
    haircut = await new_reward(db, lunch.partner_id, cost=20)
    await fund(db, settings, rider, 100)
    await reserve(db, settings, rider, lunch.reward_id, "key-1", None)

    refused = await refusal_of(reserve(db, settings, rider, haircut.reward_id, "key-1", None))

    assert refused == (409, "idempotency-key-reused")
    assert await points(db, rider) == (70, 30)


async def test_another_rider_may_use_the_same_idempotency_key(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    other = new_id("rider")
    await fund(db, settings, rider, 30)
    await fund(db, settings, other, 30)

    mine = await reserve(db, settings, rider, reward.reward_id, "key-1", None)
    theirs = await reserve(db, settings, other, reward.reward_id, "key-1", None)

    assert mine.redemption.redemption_id != theirs.redemption.redemption_id
    assert not theirs.replayed
    assert await points(db, other) == (0, 30)


async def test_an_unknown_reward_is_refused_404(db: Database, settings: Settings, rider: str) -> None:
    await fund(db, settings, rider, 100)

    refused = await refusal_of(reserve(db, settings, rider, new_id("rw-nowhere"), new_id("key"), None))

    assert refused == (404, "reward-unknown")
    assert await points(db, rider) == (100, 0)


async def test_an_inactive_reward_is_refused_409(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30, active=False)
    await fund(db, settings, rider, 100)

    refused = await refusal_of(reserve(db, settings, rider, reward.reward_id, new_id("key"), None))

    assert refused == (409, "reward-inactive")
    assert await points(db, rider) == (100, 0)


async def test_not_enough_points_raises_insufficient_balance_and_changes_nothing(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30, stock_per_month=5, per_rider_monthly_limit=1)
    await fund(db, settings, rider, 29)

    with pytest.raises(InsufficientBalance):
        await reserve(db, settings, rider, reward.reward_id, new_id("key"), None)

    assert await redemptions_of(db, rider) == []
    assert await points(db, rider) == (29, 0)
    assert await stock_left(db, reward) == 5


async def test_a_refused_reserve_does_not_use_up_the_riders_monthly_limit(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30, per_rider_monthly_limit=1)
    await fund(db, settings, rider, 29)
    with pytest.raises(InsufficientBalance):
        await hold(db, settings, rider, reward)
    await fund(db, settings, rider, 1)

    r = await hold(db, settings, rider, reward)

    assert r.status == "held"
    assert await points(db, rider) == (0, 30)


async def test_a_cost_changed_since_the_catalogue_is_reserved_at_the_current_cost_with_a_notice(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await put_reward(db, Reward(reward.reward_id, reward.partner_id, reward.title, 40, None, None, True), create=False)
    await fund(db, settings, rider, 100)

    r = await hold(db, settings, rider, reward, expected_cost=30)

    assert r.cost == 40
    assert r.notice is not None
    assert "now 40 points (you saw 30)" in r.notice
    assert await points(db, rider) == (60, 40)


async def test_the_cost_the_rider_saw_gives_no_notice(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 100)

    r = await hold(db, settings, rider, reward, expected_cost=30)

    assert (r.cost, r.notice) == (30, None)


# --- cancel ----------------------------------------------------------------------------------------


async def test_a_cancel_returns_the_points(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)

    cancelled = await cancel(db, settings, r.redemption_id, rider, rider)

    assert (cancelled.status, cancelled.resolved_by) == ("cancelled", rider)
    assert await points(db, rider) == (50, 0)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "release"]


async def test_a_second_cancel_changes_nothing(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30, stock_per_month=5)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    first = await cancel(db, settings, r.redemption_id, rider, rider)

    again = await cancel(db, settings, r.redemption_id, rider, rider)

    assert again == first
    assert await points(db, rider) == (50, 0)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "release"]
    assert await stock_left(db, reward) == 5


async def test_a_cancel_gives_the_stock_back(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30, stock_per_month=5)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    assert await stock_left(db, reward) == 4

    await cancel(db, settings, r.redemption_id, rider, rider)

    assert await stock_left(db, reward) == 5


async def test_a_rider_cannot_cancel_another_riders_redemption(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    other = new_id("rider")

    refused = await refusal_of(cancel(db, settings, r.redemption_id, other, other))

    assert refused == (404, "redemption-unknown")
    assert (await redemption(db, r.redemption_id)).status == "held"


async def test_an_operator_may_cancel_any_hold(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)

    cancelled = await cancel(db, settings, r.redemption_id, OPERATOR, None)

    assert (cancelled.status, cancelled.resolved_by) == ("cancelled", OPERATOR)
    assert await points(db, rider) == (50, 0)


async def test_a_cancel_after_confirm_is_refused_409(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    await confirm(db, settings, reward.partner_id, r.code)

    refused = await refusal_of(cancel(db, settings, r.redemption_id, rider, rider))

    assert refused == (409, "already-confirmed")
    assert await points(db, rider) == (20, 0)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "redeem"]


# --- confirm ---------------------------------------------------------------------------------------


async def test_a_confirm_pays_the_held_points_to_the_partner(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)

    confirmed = await confirm(db, settings, reward.partner_id, r.code)

    assert (confirmed.status, confirmed.resolved_by) == ("confirmed", reward.partner_id)
    b = await balance(db, rider)
    assert (b.available, b.held, b.redeemed_total) == (20, 0, 30)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "redeem"]


async def test_a_second_confirm_of_the_same_code_is_refused_409_already_confirmed(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    await confirm(db, settings, reward.partner_id, r.code)

    refused = await refusal_of(confirm(db, settings, reward.partner_id, r.code))

    assert refused == (409, "already-confirmed")
    b = await balance(db, rider)
    assert (b.available, b.held, b.redeemed_total) == (20, 0, 30)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "redeem"]


async def test_a_cancelled_code_is_refused_409_and_pays_nothing(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    await cancel(db, settings, r.redemption_id, rider, rider)

    refused = await refusal_of(confirm(db, settings, reward.partner_id, r.code))

    assert refused == (409, "already-cancelled")
    assert await points(db, rider) == (50, 0)


async def test_a_confirm_of_another_partners_code_is_404_and_counts_a_failure(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    stranger = await new_partner(db)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)

    refused = await refusal_of(confirm(db, settings, stranger, r.code))

    assert refused == (404, "code-unknown")
    assert await failures(db, settings, stranger) == 1
    assert (await redemption(db, r.redemption_id)).status == "held"
    assert await points(db, rider) == (20, 30)


async def test_after_5_wrong_codes_even_a_right_code_is_refused_429(
    db: Database, settings: Settings, rider: str
) -> None:
    assert settings.confirm_failure_limit == 5
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    for _ in range(5):
        assert await refusal_of(confirm(db, settings, reward.partner_id, new_code())) == (404, "code-unknown")

    refused = await refusal_of(confirm(db, settings, reward.partner_id, r.code))

    assert refused == (429, "too-many-wrong-codes")
    assert (await redemption(db, r.redemption_id)).status == "held"
    assert await points(db, rider) == (20, 30)


async def test_4_wrong_codes_still_let_the_right_code_through(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    for _ in range(4):
        await refusal_of(confirm(db, settings, reward.partner_id, new_code()))

    confirmed = await confirm(db, settings, reward.partner_id, r.code)

    assert confirmed.status == "confirmed"


# --- expiry ----------------------------------------------------------------------------------------


async def test_expire_due_leaves_a_hold_alone_until_its_time(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, short_ttl(settings), rider, reward)

    await expire_due(db, settings)

    assert (await redemption(db, r.redemption_id)).status == "held"
    assert await points(db, rider) == (20, 30)


async def test_expire_due_expires_a_hold_once_past_its_1_s_ttl_and_the_points_come_back(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30, stock_per_month=5)
    await fund(db, settings, rider, 50)
    r = await hold(db, short_ttl(settings), rider, reward)
    assert r.expires_at - r.created_at == timedelta(seconds=1)
    await wait_past(r.expires_at)

    await expire_due(db, settings)

    expired = await redemption(db, r.redemption_id)
    assert (expired.status, expired.resolved_by) == ("expired", "expiry")
    assert await points(db, rider) == (50, 0)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "expire"]
    assert await stock_left(db, reward) == 5


async def test_two_expire_due_at_once_expire_each_hold_exactly_once(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10)
    await fund(db, settings, rider, 50)
    holds = [await hold(db, short_ttl(settings), rider, reward) for _ in range(5)]
    assert await points(db, rider) == (0, 50)
    await wait_past(max(r.expires_at for r in holds))

    counts = await asyncio.gather(expire_due(db, settings), expire_due(db, settings))

    assert sum(counts) >= 5
    for r in holds:
        assert (await redemption(db, r.redemption_id)).status == "expired"
        assert await ledger_kinds(db, r.redemption_id) == ["hold", "expire"]
    assert await points(db, rider) == (50, 0)
    assert await posting_sums(db, rider) == (50, 0)


async def test_a_confirm_of_an_expired_code_not_yet_swept_is_refused_409_and_the_points_come_back(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, short_ttl(settings), rider, reward)
    await wait_past(r.expires_at)

    refused = await refusal_of(confirm(db, settings, reward.partner_id, r.code))

    assert refused == (409, "code-expired")
    assert (await redemption(db, r.redemption_id)).status == "expired"
    assert await points(db, rider) == (50, 0)
    assert await ledger_kinds(db, r.redemption_id) == ["hold", "expire"]
    assert await failures(db, settings, reward.partner_id) == 0


# --- stock and limits ------------------------------------------------------------------------------


async def test_20_riders_racing_for_a_stock_of_3_get_exactly_3(db: Database, settings: Settings) -> None:
    reward = await catalogue_entry(db, cost=30, stock_per_month=3)
    riders = [new_id("rider") for _ in range(20)]
    for r in riders:
        await fund(db, settings, r, 30)

    outcomes = await asyncio.gather(
        *(reserve(db, settings, r, reward.reward_id, new_id("key"), None) for r in riders), return_exceptions=True
    )

    won = [o for o in outcomes if isinstance(o, Reserved)]
    refused = [(o.status, o.kind) for o in outcomes if isinstance(o, Refused)]
    assert len(won) == 3
    assert refused == [(409, "out-of-stock")] * 17
    assert await stock_left(db, reward) == 0
    for r in riders:
        assert await points(db, r) in {(0, 30), (30, 0)}


async def test_the_third_reserve_in_a_month_is_refused_when_the_limit_is_2(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10, per_rider_monthly_limit=2)
    await fund(db, settings, rider, 100)
    await hold(db, settings, rider, reward)
    await hold(db, settings, rider, reward)

    refused = await refusal_of(reserve(db, settings, rider, reward.reward_id, new_id("key"), None))

    assert refused == (409, "monthly-limit-reached")
    assert await points(db, rider) == (80, 20)


async def test_after_a_cancel_a_rider_at_the_monthly_limit_may_reserve_again(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10, per_rider_monthly_limit=2)
    await fund(db, settings, rider, 100)
    first = await hold(db, settings, rider, reward)
    await hold(db, settings, rider, reward)
    await cancel(db, settings, first.redemption_id, rider, rider)

    third = await hold(db, settings, rider, reward)

    assert third.status == "held"
    assert await points(db, rider) == (80, 20)


async def test_the_monthly_limit_is_per_rider(db: Database, settings: Settings, rider: str) -> None:
    reward = await catalogue_entry(db, cost=10, per_rider_monthly_limit=1)
    other = new_id("rider")
    await fund(db, settings, rider, 10)
    await fund(db, settings, other, 10)
    await hold(db, settings, rider, reward)

    theirs = await hold(db, settings, other, reward)

    assert theirs.status == "held"


async def test_a_confirmed_redemption_keeps_counting_toward_the_stock(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10, stock_per_month=1)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    await confirm(db, settings, reward.partner_id, r.code)

    refused = await refusal_of(reserve(db, settings, rider, reward.reward_id, new_id("key"), None))

    assert refused == (409, "out-of-stock")
    assert await stock_left(db, reward) == 0


async def shared_total(db: Database, reward: Reward) -> int | None:
    """The reward's total for this month, or None when it keeps none."""
    async with db.read() as conn:
        used: int | None = await conn.fetchval(
            "SELECT used FROM reward_usage WHERE reward_id = $1 AND month = $2 AND rider_id = ''",
            reward.reward_id,
            month_of(datetime.now(UTC)),
        )
    return used


async def test_a_reward_with_no_stock_limit_keeps_no_total_for_a_burst_to_queue_on(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10, per_rider_monthly_limit=2)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    await cancel(db, settings, r.redemption_id, rider, rider)
    await hold(db, settings, rider, reward)

    assert await shared_total(db, reward) is None
    assert await stock_left(db, reward) is None


async def test_a_stock_set_mid_month_counts_what_is_already_held_and_confirmed(
    db: Database, settings: Settings
) -> None:
    reward = await catalogue_entry(db, cost=10)
    riders = [new_id("rider") for _ in range(4)]
    for r in riders:
        await fund(db, settings, r, 10)
    held = [await hold(db, settings, r, reward) for r in riders[:3]]
    await confirm(db, settings, reward.partner_id, held[0].code)
    await cancel(db, settings, held[1].redemption_id, riders[1], riders[1])

    limited = replace(reward, stock_per_month=3)
    await put_reward(db, limited, create=False)

    assert await stock_left(db, limited) == 1  # one confirmed, one held; the cancelled one does not count
    await hold(db, settings, riders[3], limited)
    assert await refusal_of(reserve(db, settings, riders[1], reward.reward_id, new_id("key"), None)) == (
        409,
        "out-of-stock",
    )


async def test_a_stock_lifted_and_set_again_counts_the_holds_of_the_month_then(
    db: Database, settings: Settings
) -> None:
    reward = await catalogue_entry(db, cost=10, stock_per_month=5)
    riders = [new_id("rider") for _ in range(3)]
    for r in riders:
        await fund(db, settings, r, 10)
    first, second = [await hold(db, settings, r, reward) for r in riders[:2]]
    lifted = replace(reward, stock_per_month=None)
    await put_reward(db, lifted, create=False)
    assert await shared_total(db, reward) is None

    await cancel(db, settings, first.redemption_id, riders[0], riders[0])  # taken counted, released uncounted
    await hold(db, settings, riders[2], lifted)  # taken uncounted
    await put_reward(db, reward, create=False)

    assert await stock_left(db, reward) == 3  # second and the third rider's: 2 of 5
    await cancel(db, settings, second.redemption_id, riders[1], riders[1])
    assert await stock_left(db, reward) == 4


async def test_a_release_under_way_while_a_stock_is_set_finishes_first_and_is_not_counted(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10)
    await fund(db, settings, rider, 10)
    r = await hold(db, settings, rider, reward)
    limited = replace(reward, stock_per_month=2)

    async with db.pool.acquire() as conn, conn.transaction():
        # A release half-way: its redemption row changed, not yet committed, as in _resolve.
        await conn.execute("UPDATE redemption SET status = 'cancelled' WHERE redemption_id = $1", r.redemption_id)
        setting = asyncio.create_task(put_reward(db, limited, create=False))
        await asyncio.sleep(0.5)
        assert not setting.done(), "the total must wait for the release under way"
    await setting

    assert await stock_left(db, limited) == 2


async def test_a_release_counted_by_no_total_leaves_the_total_at_zero(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10, stock_per_month=5)
    await fund(db, settings, rider, 10)
    r = await hold(db, settings, rider, reward)
    async with db.pool.acquire() as conn:  # as a clock a moment behind at the month's turn would leave it
        await conn.execute("UPDATE reward_usage SET used = 0 WHERE reward_id = $1", reward.reward_id)

    await cancel(db, settings, r.redemption_id, rider, rider)

    assert await shared_total(db, reward) == 0
    assert await points(db, rider) == (10, 0)


# --- the available balance under concurrency -------------------------------------------------------


async def test_two_reserves_racing_for_the_last_30_points_one_wins(
    db: Database, settings: Settings, rider: str
) -> None:
    lunch = await catalogue_entry(db, cost=30)
    haircut = await new_reward(db, lunch.partner_id, cost=30)
    await fund(db, settings, rider, 30)

    outcomes = await asyncio.gather(
        reserve(db, settings, rider, lunch.reward_id, new_id("key"), None),
        reserve(db, settings, rider, haircut.reward_id, new_id("key"), None),
        return_exceptions=True,
    )

    assert sorted(type(o).__name__ for o in outcomes) == ["InsufficientBalance", "Reserved"]
    assert await points(db, rider) == (0, 30)
    assert len(await redemptions_of(db, rider)) == 1


async def test_200_concurrent_reserves_from_50_riders_spend_exactly_what_the_balances_allow(
    db: Database, settings: Settings
) -> None:
    # 50 riders try 4 reserves each of a 10-point reward; rider i has (i % 5) * 10 points, so
    # 10 riders each can afford 0, 1, 2, 3 and 4 of them: 10 * (0 + 1 + 2 + 3 + 4) = 100 in total.
    reward = await catalogue_entry(db, cost=10)
    riders = [new_id("rider") for _ in range(50)]
    affordable = {r: i % 5 for i, r in enumerate(riders)}
    for r, n in affordable.items():
        if n:
            await fund(db, settings, r, n * 10)
    attempts = [reserve(db, settings, r, reward.reward_id, new_id("key"), None) for r in riders for _ in range(4)]
    lowest: list[int] = []
    done = asyncio.Event()

    async def watch_balances() -> None:
        while not done.is_set():
            async with db.read() as conn:
                low = await conn.fetchval(
                    "SELECT min(least(available, held)) FROM rider_balance WHERE rider_id = ANY($1::text[])", riders
                )
            if low is not None:
                lowest.append(low)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch_balances())
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    done.set()
    await watcher

    assert len(attempts) == 200
    assert sum(isinstance(o, Reserved) for o in outcomes) == 100
    assert sum(isinstance(o, InsufficientBalance) for o in outcomes) == 100
    assert lowest
    assert min(lowest) >= 0
    for r, n in affordable.items():
        b = await balance(db, r)
        assert (b.available, b.held) == (0, n * 10)
        assert await posting_sums(db, r) == (b.available, b.held)
        assert len(await redemptions_of(db, r)) == n


async def test_ledger_postings_sum_to_the_balance_through_hold_confirm_cancel_and_expiry(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=10)
    await fund(db, settings, rider, 100)
    confirmed = await hold(db, settings, rider, reward)
    await confirm(db, settings, reward.partner_id, confirmed.code)
    cancelled = await hold(db, settings, rider, reward)
    await cancel(db, settings, cancelled.redemption_id, rider, rider)
    expired = await hold(db, short_ttl(settings), rider, reward)
    await hold(db, settings, rider, reward)
    await wait_past(expired.expires_at)
    await expire_due(db, settings)

    b = await balance(db, rider)

    assert (b.available, b.held, b.redeemed_total) == (80, 10, 10)
    assert await posting_sums(db, rider) == (80, 10)


# --- settlement ------------------------------------------------------------------------------------


async def test_the_settlement_is_the_sum_of_the_partners_confirmed_redemptions(
    db: Database, settings: Settings, rider: str
) -> None:
    lunch = await catalogue_entry(db, cost=30)
    checkup = await new_reward(db, lunch.partner_id, cost=45)
    elsewhere = await catalogue_entry(db, cost=20)
    await fund(db, settings, rider, 500)
    started = datetime.now(UTC) - timedelta(minutes=1)
    paid = [await hold(db, settings, rider, lunch), await hold(db, settings, rider, checkup)]
    for r in paid:
        await confirm(db, settings, lunch.partner_id, r.code)
    await cancel(db, settings, (await hold(db, settings, rider, lunch)).redemption_id, rider, rider)
    await hold(db, settings, rider, checkup)  # still held: not settled
    other = await hold(db, settings, rider, elsewhere)
    await confirm(db, settings, elsewhere.partner_id, other.code)  # another partner's

    async with db.read() as conn:
        rows = await RedemptionQueries(conn).settlement(lunch.partner_id, started, datetime.now(UTC))

    assert sorted(r.redemption_id for r in rows) == sorted(r.redemption_id for r in paid)
    assert sum(r.points for r in rows) == 30 + 45
    assert {r.reward_id: r.points for r in rows} == {lunch.reward_id: 30, checkup.reward_id: 45}


async def test_the_settlement_counts_only_confirmations_inside_the_period(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    r = await hold(db, settings, rider, reward)
    before = datetime.now(UTC) - timedelta(seconds=1)
    await confirm(db, settings, reward.partner_id, r.code)

    async with db.read() as conn:
        earlier = await RedemptionQueries(conn).settlement(reward.partner_id, before - timedelta(days=30), before)

    assert earlier == []
