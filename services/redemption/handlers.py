"""Use cases of the redemption service. Each runs in one transaction: the redemption's state, the
stock and limit counters, its ledger entry and its outbox message commit together or not at all.

A use case returns ``Done``: its result, the changes it committed (``Changed`` events) and, where the
rules refuse yet something was committed all the same (a code confirmed too late expires its hold), the
refusal to raise. ``recorded`` wraps each: after the commit it records the changes (metrics, log) and
raises the refusal or returns the result, so a retried unit of work never counts twice."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Generic, ParamSpec, TypeVar

import orjson

from libs.i18n.problems import P_, says
from libs.ledger.store import InsufficientBalance, LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.locks import lock
from libs.platform.outbox_store import OutboxMessage, OutboxStore
from libs.platform.settings import Settings
from services.redemption import metrics
from services.redemption.domain.catalogue import Partner, Reward, limit_refusal
from services.redemption.domain.errors import (
    CodeUnknown,
    IdempotencyKeyReused,
    PartnerExists,
    PartnerUnknown,
    RedemptionUnknown,
    Refused,
    RewardExists,
    RewardInactive,
    RewardUnknown,
    TooManyWrongCodes,
)
from services.redemption.domain.holds import (
    RESULT_OF,
    Changed,
    Redemption,
    Resolution,
    Status,
    check_resolution,
    hold_entry,
    month_of,
    new_code,
    new_hold,
    request_hash,
    resolution_entry,
)
from services.redemption.store import RedemptionStore

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """What a unit of work committed: its result (None only when refused), its changes, and a refusal
    to answer with after all."""

    result: T | None
    changes: Sequence[Changed] = ()
    refused: Refused | None = None


def recorded(use_case: Callable[P, Awaitable[Done[T]]]) -> Callable[P, Awaitable[T]]:
    """The use case, with its committed changes recorded (metrics, log) before it answers."""

    @functools.wraps(use_case)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        done = await use_case(*args, **kwargs)
        metrics.record(done.changes)
        if done.refused is not None:
            raise done.refused
        assert done.result is not None, f"{use_case.__name__}: neither a result nor a refusal"
        return done.result

    return run


@dataclass(frozen=True, slots=True)
class Reserved:
    redemption: Redemption
    replayed: bool  # the same Idempotency-Key again: the first answer, nothing more held


@recorded
async def reserve(
    db: Database, settings: Settings, rider_id: str, reward_id: str, idempotency_key: str, expected_cost: int | None
) -> Done[Reserved]:
    """Hold the reward's cost from the rider's available points and issue a code. The same key again
    answers the first hold; a hold beyond the available balance is refused (InsufficientBalance, from the
    ledger, which alone knows the balance)."""

    async def work(conn: Connection) -> Done[Reserved]:
        store = RedemptionStore(conn)
        await lock(conn, [f"redemption-key:{rider_id}:{idempotency_key}"])  # the same key twice at once
        earlier = await store.by_idempotency_key(rider_id, idempotency_key)
        if earlier is not None:
            if earlier.request_hash != request_hash(reward_id):
                raise IdempotencyKeyReused()
            return Done(Reserved(earlier, replayed=True))
        offer = await store.reward_on_offer(reward_id)
        if offer is None:
            raise RewardUnknown(reward_id, to_reserve=True)
        reward, partner = offer
        if not reward.active:
            raise RewardInactive(reward_id)
        ttl = timedelta(seconds=settings.redemption_hold_ttl_s)
        redemption = await _insert(
            store, new_hold(reward, rider_id, idempotency_key, datetime.now(UTC), ttl, expected_cost)
        )
        entry = hold_entry(redemption.redemption_id, rider_id, reward.cost, reward.title, partner.name, reward_id)
        try:
            await LedgerStore(conn).append([entry])
        except InsufficientBalance as exc:  # the ledger's refusal, in the rider's words
            raise InsufficientBalance(
                says(P_("reward_id: {reward_id} costs more than your available points"), reward_id=reward_id)
            ) from exc
        # The stock is counted last: its row is shared by every rider of the reward, and each reserve
        # holds its lock until commit.
        await _take(store, reward, redemption.month, rider_id)
        await OutboxStore(conn).add([state_message(settings, redemption)])
        return Done(Reserved(redemption, replayed=False), [Changed(partner.kind, redemption)])

    return await db.run(work)


async def _take(store: RedemptionStore, reward: Reward, month: str, rider_id: str) -> None:
    full = await store.take(reward, month, rider_id)
    refusal = limit_refusal(reward, month, stock_full=full.stock, rider_full=full.rider)
    if refusal is not None:
        raise refusal  # the unit of work rolls back: the hold and the counters taken with it


async def _insert(store: RedemptionStore, redemption: Redemption) -> Redemption:
    for _ in range(10):  # a collision among live codes is rare (8.5e11 codes); draw again
        if await store.add(redemption):
            return redemption
        redemption = replace(redemption, code=new_code())
    raise RuntimeError("could not draw a free redemption code")


async def _resolve(
    conn: Connection, settings: Settings, r: Redemption, action: Resolution, actor: str | None
) -> Changed:
    """Move a held redemption to its resolution: state, ledger entry, counters, outbox. The balance
    comes before the counters, the order reserve takes them in, so the two never deadlock."""
    store = RedemptionStore(conn)
    resolved = await store.resolve(r.redemption_id, RESULT_OF[action], actor)
    assert resolved is not None, "the caller locked a held redemption"
    await LedgerStore(conn).append(
        [resolution_entry(r.redemption_id, r.rider_id, r.cost, r.title, r.partner_id, action, actor)]
    )
    if action is not Resolution.CONFIRM:
        await store.give_back(r.reward_id, r.month, r.rider_id)
    await OutboxStore(conn).add([state_message(settings, resolved)])
    partner = await store.partner(r.partner_id)
    return Changed(partner.kind if partner else "unknown", resolved)


@recorded
async def cancel(
    db: Database, settings: Settings, redemption_id: str, actor: str, rider_id: str | None
) -> Done[Redemption]:
    """Cancel a hold; ``rider_id`` is the caller when a rider (an operator may cancel any)."""

    async def work(conn: Connection) -> Done[Redemption]:
        r = await RedemptionStore(conn).get(redemption_id, for_update=True)
        if r is None or (rider_id is not None and r.rider_id != rider_id):
            raise RedemptionUnknown(redemption_id)
        refusal = check_resolution(r.status, Resolution.CANCEL, r.expires_at, datetime.now(UTC))
        if refusal is not None:
            raise refusal
        if r.status is Status.CANCELLED:
            return Done(r)
        changed = await _resolve(conn, settings, r, Resolution.CANCEL, actor)
        return Done(changed.redemption, [changed])

    return await db.run(work)


@recorded
async def confirm(db: Database, settings: Settings, partner_id: str, code: str) -> Done[Redemption]:
    """A partner confirms a code at the counter. Unknown codes, and codes of other partners, count as
    failures; past the limit in the window the partner must wait, so guessing codes does not pay. A
    code confirmed past its hold's expiry expires the hold (committed) and is refused."""

    async def work(conn: Connection) -> Done[Redemption]:
        store = RedemptionStore(conn)
        if (too_many := await _too_many_wrong_codes(store, settings, partner_id)) is not None:
            return Done(None, refused=too_many)
        live = await store.live_by_code(code)
        if live is None or live.partner_id != partner_id:
            return await _not_live(store, settings, partner_id, code)
        refusal = check_resolution(Status.HELD, Resolution.CONFIRM, live.expires_at, datetime.now(UTC))
        if refusal is None:
            confirmed = await _resolve(conn, settings, live, Resolution.CONFIRM, partner_id)
            return Done(confirmed.redemption, [confirmed])
        expired = await _resolve(conn, settings, live, Resolution.EXPIRE, "expiry")
        return Done(expired.redemption, [expired], refused=refusal)

    return await db.run(work)


async def _not_live(store: RedemptionStore, settings: Settings, partner_id: str, code: str) -> Done[Redemption]:
    """A code that is not a live hold of this partner: its own used or expired code is explained;
    anything else is a wrong code, counted towards the limit (code-unknown, existence not revealed)."""
    earlier = await store.latest_by_code(code, partner_id)
    if earlier is not None:
        refusal = check_resolution(earlier.status, Resolution.CONFIRM, earlier.expires_at, datetime.now(UTC))
        assert refusal is not None  # only a held redemption may be confirmed, and it is not held
        return Done(earlier, refused=refusal)
    await store.count_failure(partner_id, settings.confirm_failure_window_s)
    return Done(None, refused=CodeUnknown())


async def _too_many_wrong_codes(
    store: RedemptionStore, settings: Settings, partner_id: str
) -> TooManyWrongCodes | None:
    """The partner's wrong codes in the window have reached the limit: it waits before trying any code."""
    window = settings.confirm_failure_window_s
    if await store.failures(partner_id, window) < settings.confirm_failure_limit:
        return None
    ends = await store.window_ends(partner_id, window)
    wait = max(int(((ends or datetime.now(UTC)) - datetime.now(UTC)).total_seconds()), 1)
    return TooManyWrongCodes(settings.confirm_failure_limit, window, retry_after_s=wait)


@recorded
async def look_up(db: Database, settings: Settings, partner_id: str, code: str) -> Done[Redemption]:
    """What a code stands for, before the partner confirms it: the partner's own live hold. Held by the
    same rules as a confirmation: an unknown code, or another partner's, counts as a wrong code, and past
    the limit the partner must wait; a code of its own that is no longer held is explained."""

    async def work(conn: Connection) -> Done[Redemption]:
        store = RedemptionStore(conn)
        if (too_many := await _too_many_wrong_codes(store, settings, partner_id)) is not None:
            return Done(None, refused=too_many)
        live = await store.live_by_code(code)
        if live is None or live.partner_id != partner_id:
            return await _not_live(store, settings, partner_id, code)
        # An expired hold is left to the expiry sweep (or the confirmation): looking changes nothing.
        return Done(live, refused=check_resolution(Status.HELD, Resolution.CONFIRM, live.expires_at, datetime.now(UTC)))

    return await db.run(work)


async def expire_due(db: Database, settings: Settings, limit: int = 100) -> int:
    """Expire up to ``limit`` holds past their time, exactly once even with several replicas sweeping;
    returns how many (``limit``: there may be more).

    One hold per transaction: resolving a hold takes its rider's balance, then its reward's counters,
    the order a reserve takes them in. Several holds in one transaction would take a second rider's
    balance while holding the first reward's counters, and deadlock with that rider's reserve of that
    reward (which holds its balance and waits for the counters)."""
    expired = 0
    while expired < limit and await _expire_one(db, settings):
        expired += 1
    return expired


@recorded
async def _expire_one(db: Database, settings: Settings) -> Done[bool]:
    """Expire the hold that is longest past its time, if any; False when none is due."""

    async def work(conn: Connection) -> Done[bool]:
        due = await RedemptionStore(conn).due_to_expire(1)
        changes = [await _resolve(conn, settings, r, Resolution.EXPIRE, "expiry") for r in due]
        return Done(bool(due), changes)

    return await db.run(work)


async def add_partner(db: Database, partner: Partner) -> tuple[Partner, bool]:
    """Add a partner; the same partner again changes nothing (False), another with its id is refused."""

    async def work(conn: Connection) -> tuple[Partner, bool]:
        store = RedemptionStore(conn)
        created = await store.add_partner(partner)
        stored = await store.partner(partner.partner_id)
        assert stored is not None
        if stored != partner:
            raise PartnerExists(partner.partner_id)
        return stored, created

    return await db.run(work)


async def put_reward(db: Database, reward: Reward, create: bool) -> Reward:
    """Add (``create``) or replace a reward of a known partner."""

    async def work(conn: Connection) -> Reward:
        store = RedemptionStore(conn)
        if await store.partner(reward.partner_id) is None:
            raise PartnerUnknown(reward.partner_id)
        existing = await store.reward(reward.reward_id)
        if create and existing is not None and existing != reward:
            raise RewardExists(reward.reward_id)
        if not create and existing is None:
            raise RewardUnknown(reward.reward_id)
        await store.put_reward(reward)
        await store.count_stock(reward, month_of(datetime.now(UTC)))
        return reward

    return await db.run(work)


def state_message(settings: Settings, r: Redemption) -> OutboxMessage:
    status = r.status.value
    body = {
        "specversion": "1.0",
        "id": f"redemption-{r.redemption_id}-{status}",
        "source": "warmbee/redemption",
        "type": f"redemption.{status}",
        "subject": r.rider_id,
        "time": (r.resolved_at or r.created_at).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "redemption_id": r.redemption_id,
            "reward_id": r.reward_id,
            "partner_id": r.partner_id,
            "rider_id": r.rider_id,
            "cost": r.cost,
            "status": status,
            "expires_at": r.expires_at.isoformat(),
        },
    }
    return OutboxMessage(settings.topic_points_ledger, r.rider_id.encode(), orjson.dumps(body))
