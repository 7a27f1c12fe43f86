"""The expiry sweep on real PostgreSQL: it never deadlocks with reserves of the same riders and reward,
catches up on a backlog one hold per transaction, and survives an error it did not expect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import REGISTRY

from libs.platform.db import Connection, Database
from libs.platform.settings import Settings
from services.redemption.entrypoints.jobs import expiry_sweep
from services.redemption.handlers import expire_due, reserve
from tests.integration.test_redemption import (
    catalogue_entry,
    fund,
    hold,
    ledger_kinds,
    new_id,
    points,
    posting_sums,
    redemption,
    short_ttl,
    wait_past,
)

T = TypeVar("T")


def loop_failures() -> float:
    return REGISTRY.get_sample_value("warmbee_loop_failures_total", {"loop": "expiry_sweep"}) or 0.0


async def test_reserves_and_expiries_of_the_same_riders_and_reward_at_once_never_deadlock(
    db: Database, settings: Settings
) -> None:
    # No retries: a deadlock (which the unit of work would otherwise retry quietly) fails the test.
    strict = Database(settings, max_attempts=1)
    await strict.open()
    try:
        reward = await catalogue_entry(db, cost=10, stock_per_month=10_000)
        riders = [new_id("rider") for _ in range(12)]
        for r in riders:
            await fund(db, settings, r, 1000)
        due = [await hold(db, short_ttl(settings), r, reward) for r in riders for _ in range(4)]
        await wait_past(max(h.expires_at for h in due))

        # Each reserve locks its rider's balance, then the reward's shared stock row; the sweeps expire
        # 48 holds of the same riders and reward meanwhile, two replicas at once.
        expired, reserved = await asyncio.gather(
            asyncio.gather(expire_due(strict, settings), expire_due(strict, settings)),
            asyncio.gather(
                *(reserve(strict, settings, r, reward.reward_id, new_id("key"), None) for r in riders for _ in range(3))
            ),
        )

        assert sum(expired) == len(due)
        assert not any(r.replayed for r in reserved)
        for h in due:
            assert (await redemption(db, h.redemption_id)).status == "expired"
            assert await ledger_kinds(db, h.redemption_id) == ["hold", "expire"]
        for r in riders:
            assert await points(db, r) == (970, 30)
            assert await posting_sums(db, r) == (970, 30)
    finally:
        await strict.close()


async def test_expire_due_catches_up_on_a_backlog_one_hold_per_transaction(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=1)
    await fund(db, settings, rider, 50)
    due = [await hold(db, short_ttl(settings), rider, reward) for _ in range(7)]
    await wait_past(max(h.expires_at for h in due))

    assert await expire_due(db, settings, limit=3) == 3  # as far as asked: the caller comes back for more
    assert await expire_due(db, settings, limit=100) == 4
    assert await expire_due(db, settings, limit=100) == 0
    assert await points(db, rider) == (50, 0)


class FailingOnce(Database):
    """A real database whose first unit of work raises an error nobody expects (a defect, say)."""

    failed = False

    async def run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        if not self.failed:
            self.failed = True
            raise RuntimeError("an error nobody expected")
        return await super().run(work)


async def test_the_sweep_survives_an_unexpected_error_counts_it_and_expires_the_hold_after_a_pause(
    db: Database, settings: Settings, rider: str
) -> None:
    reward = await catalogue_entry(db, cost=30)
    await fund(db, settings, rider, 50)
    h = await hold(db, short_ttl(settings), rider, reward)
    await wait_past(h.expires_at)
    flaky = FailingOnce(settings)
    await flaky.open()
    sweep = expiry_sweep(flaky, settings.model_copy(update={"redemption_expiry_sweep_s": 0.05}))
    before = loop_failures()

    task = asyncio.create_task(sweep.run())
    try:
        for _ in range(100):
            if (await redemption(db, h.redemption_id)).status == "expired":
                break
            await asyncio.sleep(0.05)
    finally:
        sweep.stop()
        await asyncio.wait_for(task, timeout=5)
        await flaky.close()

    assert flaky.failed
    assert loop_failures() == before + 1
    assert (await redemption(db, h.redemption_id)).status == "expired"
    assert await points(db, rider) == (50, 0)
