"""Use cases of the redemption service. Each runs in one transaction: the redemption's state, the
stock and limit counters, its ledger entry and its outbox message commit together or not at all."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import orjson
import structlog
from prometheus_client import Counter, Gauge

from libs.ledger.store import LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.errors import DomainError
from libs.platform.locks import lock
from libs.platform.outbox_store import OutboxMessage, OutboxStore
from libs.platform.settings import Settings
from services.redemption.domain.holds import (
    RESULT_OF,
    Refusal,
    Resolution,
    Status,
    check_resolution,
    hold_entry,
    month_of,
    new_code,
    resolution_entry,
)
from services.redemption.store import ALL_RIDERS, Partner, Redemption, RedemptionStore, Reward

log = structlog.get_logger(__name__)

PARTNER_KINDS = ("merchant", "hospital", "barber")
REDEMPTIONS = Counter(
    "warmbee_redemptions_total",
    "Redemption state changes by partner kind and new status: held (a hold placed), confirmed, cancelled, expired",
    ["kind", "status"],
)
POINTS_HELD = Counter("warmbee_points_held_total", "Points held for redemptions", ["kind"])
POINTS_REDEEMED = Counter("warmbee_points_redeemed_total", "Held points redeemed at partners (confirmed)", ["kind"])
POINTS_RELEASED = Counter(
    "warmbee_points_released_total",
    "Held points given back to riders, by reason: cancelled, expired",
    ["kind", "reason"],
)
HOLDS_OPEN = Gauge("warmbee_redemption_holds_open", "Holds waiting for their partner's confirmation", ["kind"])
for _kind in PARTNER_KINDS:  # every series from the start, so rates and alerts see 0 rather than nothing
    POINTS_HELD.labels(_kind)
    POINTS_REDEEMED.labels(_kind)
    for _status in Status:
        REDEMPTIONS.labels(_kind, _status.value)
    for _reason in (Status.CANCELLED, Status.EXPIRED):
        POINTS_RELEASED.labels(_kind, _reason.value)

# What a unit of work changed, (partner kind, redemption as changed); counted once it has committed.
Changes = list[tuple[str, Redemption]]


def _record(changes: Changes) -> None:
    for kind, r in changes:
        REDEMPTIONS.labels(kind, r.status).inc()
        if r.status == Status.HELD:
            POINTS_HELD.labels(kind).inc(r.cost)
        elif r.status == Status.CONFIRMED:
            POINTS_REDEEMED.labels(kind).inc(r.cost)
        else:
            POINTS_RELEASED.labels(kind, r.status).inc(r.cost)
        log.info(
            f"redemption.{r.status}",
            redemption_id=r.redemption_id,
            rider_id=r.rider_id,
            partner_id=r.partner_id,
            kind=kind,
            reward_id=r.reward_id,
            cost=r.cost,
        )


async def measure_open_holds(db: Database) -> None:
    """Export the holds waiting for their partner, per partner kind (every replica reports the same)."""
    async with db.read() as conn:
        counts = await RedemptionStore(conn).open_holds_by_kind()
    for kind in {*PARTNER_KINDS, *counts}:
        HOLDS_OPEN.labels(kind).set(counts.get(kind, 0))


class Refused(DomainError):
    """A request the rules of redemption do not allow; nothing was changed."""

    def __init__(self, status: int, refusal: Refusal) -> None:
        super().__init__(refusal.detail, kind=refusal.slug, title=refusal.title)
        assert status == self.status, f"{refusal.slug}: {status} here, {self.status} in libs/platform/errors.py"
        self.refusal = refusal


def _refused(status: int, slug: str, title: str, detail: str) -> Refused:
    return Refused(status, Refusal(slug, title, detail))


@dataclass(frozen=True, slots=True)
class Reserved:
    redemption: Redemption
    replayed: bool  # the same Idempotency-Key again: the first answer, nothing more held


def _request_hash(reward_id: str) -> str:
    return hashlib.sha256(reward_id.encode()).hexdigest()


async def reserve(
    db: Database, settings: Settings, rider_id: str, reward_id: str, idempotency_key: str, expected_cost: int | None
) -> Reserved:
    changes: Changes = []

    async def work(conn: Connection) -> Reserved:
        changes.clear()  # a retried unit of work starts again
        store = RedemptionStore(conn)
        await lock(conn, [f"redemption-key:{rider_id}:{idempotency_key}"])  # the same key twice at once
        earlier = await store.by_idempotency_key(rider_id, idempotency_key)
        if earlier is not None:
            if earlier.request_hash != _request_hash(reward_id):
                raise _refused(
                    409,
                    "idempotency-key-reused",
                    "Idempotency-Key reused",
                    "Idempotency-Key: this key was used for another reward; use a new key per redemption",
                )
            return Reserved(earlier, replayed=True)
        offer = await store.reward_on_offer(reward_id)
        if offer is None:
            raise _refused(
                404,
                "reward-unknown",
                "Unknown reward",
                f"reward_id: no reward {reward_id!r}; pick one from GET /v1/rewards",
            )
        reward, partner = offer
        if not reward.active:
            raise _refused(
                409, "reward-inactive", "Reward not available", f"reward_id: {reward_id!r} is not offered at the moment"
            )
        now = datetime.now(UTC)
        month = month_of(now)
        redemption = await _insert(
            store, _new_redemption(reward, rider_id, idempotency_key, now, month, settings, expected_cost)
        )
        await LedgerStore(conn).append(
            [hold_entry(redemption.redemption_id, rider_id, reward.cost, reward.title, partner.name, reward.reward_id)]
        )
        # The stock is counted last: its row is shared by every rider of the reward, and each reserve
        # holds its lock until commit.
        await _take(store, reward, month, rider_id)
        await OutboxStore(conn).add([state_message(settings, redemption)])
        changes.append((partner.kind, redemption))
        return Reserved(redemption, replayed=False)

    reserved = await db.run(work)
    _record(changes)
    return reserved


async def _take(store: RedemptionStore, reward: Reward, month: str, rider_id: str) -> None:
    full = await store.take(
        reward.reward_id, month, [(ALL_RIDERS, reward.stock_per_month), (rider_id, reward.per_rider_monthly_limit)]
    )
    if ALL_RIDERS in full:
        raise _refused(
            409,
            "out-of-stock",
            "Out of stock",
            f"reward_id: all {reward.stock_per_month} of {reward.title} for {month} are taken; "
            "try next month or another reward",
        )
    if full:
        raise _refused(
            409,
            "monthly-limit-reached",
            "Monthly limit reached",
            f"reward_id: a rider may redeem {reward.title} {reward.per_rider_monthly_limit} time(s) a "
            f"month, and {month}'s are used",
        )


def _new_redemption(
    reward: Reward, rider_id: str, key: str, now: datetime, month: str, settings: Settings, expected_cost: int | None
) -> Redemption:
    notice = None
    if expected_cost is not None and expected_cost != reward.cost:
        notice = (
            f"the price of {reward.title} is now {reward.cost} points (you saw {expected_cost}); "
            f"{reward.cost} points were held"
        )
    return Redemption(
        redemption_id=str(uuid.uuid4()),
        reward_id=reward.reward_id,
        partner_id=reward.partner_id,
        rider_id=rider_id,
        title=reward.title,
        cost=reward.cost,
        status=Status.HELD.value,
        code=new_code(),
        month=month,
        idempotency_key=key,
        request_hash=_request_hash(reward.reward_id),
        notice=notice,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.redemption_hold_ttl_s),
        resolved_at=None,
        resolved_by=None,
    )


async def _insert(store: RedemptionStore, redemption: Redemption) -> Redemption:
    for _ in range(10):  # a collision among live codes is rare (8.5e11 codes); draw again
        if await store.add(redemption):
            return redemption
        redemption = replace(redemption, code=new_code())
    raise RuntimeError("could not draw a free redemption code")


async def _resolve(
    conn: Connection, settings: Settings, r: Redemption, action: Resolution, actor: str | None, changes: Changes
) -> Redemption:
    """Move a held redemption to its resolution: state, ledger entry, counters, outbox. The balance
    comes before the counters, the order reserve takes them in, so the two never deadlock."""
    store = RedemptionStore(conn)
    resolved = await store.resolve(r.redemption_id, RESULT_OF[action].value, actor)
    assert resolved is not None, "the caller locked a held redemption"
    await LedgerStore(conn).append(
        [resolution_entry(r.redemption_id, r.rider_id, r.cost, r.title, r.partner_id, action, actor)]
    )
    if action is not Resolution.CONFIRM:
        await store.give_back(r.reward_id, r.month, [ALL_RIDERS, r.rider_id])
    await OutboxStore(conn).add([state_message(settings, resolved)])
    partner = await store.partner(r.partner_id)
    changes.append((partner.kind if partner else "unknown", resolved))
    return resolved


async def cancel(db: Database, settings: Settings, redemption_id: str, actor: str, rider_id: str | None) -> Redemption:
    """Cancel a hold; ``rider_id`` is the caller when a rider (an operator may cancel any)."""
    changes: Changes = []

    async def work(conn: Connection) -> Redemption:
        changes.clear()
        r = await RedemptionStore(conn).get(redemption_id, for_update=True)
        if r is None or (rider_id is not None and r.rider_id != rider_id):
            raise _refused(404, "redemption-unknown", "Unknown redemption", f"no redemption {redemption_id!r} of yours")
        refusal = check_resolution(Status(r.status), Resolution.CANCEL, r.expires_at, datetime.now(UTC))
        if refusal is not None:
            raise Refused(409, refusal)
        if r.status == Status.CANCELLED:
            return r
        return await _resolve(conn, settings, r, Resolution.CANCEL, actor, changes)

    cancelled = await db.run(work)
    _record(changes)
    return cancelled


@dataclass(frozen=True, slots=True)
class Confirmation:
    redemption: Redemption | None
    refusal: Refused | None


async def confirm(db: Database, settings: Settings, partner_id: str, code: str) -> Redemption:
    """A partner confirms a code at the counter. Unknown codes, and codes of other partners, count as
    failures; past the limit in the window the partner must wait, so guessing codes does not pay."""
    changes: Changes = []

    async def work(conn: Connection) -> Confirmation:
        changes.clear()
        store = RedemptionStore(conn)
        too_many = await _too_many_wrong_codes(store, settings, partner_id)
        if too_many is not None:
            return Confirmation(None, too_many)
        live = await store.live_by_code(code)
        if live is not None and live.partner_id == partner_id:
            now = datetime.now(UTC)
            refusal = check_resolution(Status.HELD, Resolution.CONFIRM, live.expires_at, now)
            if refusal is None:
                return Confirmation(await _resolve(conn, settings, live, Resolution.CONFIRM, partner_id, changes), None)
            expired = await _resolve(conn, settings, live, Resolution.EXPIRE, "expiry", changes)
            return Confirmation(expired, Refused(409, refusal))
        return await _not_live(store, settings, partner_id, code)

    outcome = await db.run(work)
    _record(changes)
    if outcome.refusal is not None:
        raise outcome.refusal
    assert outcome.redemption is not None
    return outcome.redemption


async def _not_live(store: RedemptionStore, settings: Settings, partner_id: str, code: str) -> Confirmation:
    """A code that is not a live hold of this partner: its own used or expired code is explained (409);
    anything else is a wrong code, counted towards the limit (404, existence not revealed)."""
    earlier = await store.latest_by_code(code, partner_id)
    if earlier is not None:
        refusal = check_resolution(Status(earlier.status), Resolution.CONFIRM, earlier.expires_at, datetime.now(UTC))
        assert refusal is not None  # only a held redemption may be confirmed, and it is not held
        return Confirmation(earlier, Refused(409, refusal))
    await store.count_failure(partner_id, settings.confirm_failure_window_s)
    return Confirmation(
        None,
        _refused(
            404,
            "code-unknown",
            "Unknown code",
            "code: no live redemption of yours has this code; check it with the rider "
            "(8 characters, no 0, O, 1, I or L)",
        ),
    )


async def _too_many_wrong_codes(store: RedemptionStore, settings: Settings, partner_id: str) -> Refused | None:
    """The partner's wrong codes in the window have reached the limit: it waits before trying any code."""
    window = settings.confirm_failure_window_s
    if await store.failures(partner_id, window) < settings.confirm_failure_limit:
        return None
    ends = await store.window_ends(partner_id, window)
    wait = max(int(((ends or datetime.now(UTC)) - datetime.now(UTC)).total_seconds()), 1)
    return _refused(
        429,
        "too-many-wrong-codes",
        "Too many wrong codes",
        f"code: {settings.confirm_failure_limit} wrong codes within {window // 60} minutes; try "
        f"again in {wait} seconds and check the code with the rider",
    )


async def look_up(db: Database, settings: Settings, partner_id: str, code: str) -> Redemption:
    """What a code stands for, before the partner confirms it: the partner's own live hold. Held by the
    same rules as a confirmation: an unknown code, or another partner's, counts as a wrong code, and past
    the limit the partner must wait; a code of its own that is no longer held is explained (409)."""

    async def work(conn: Connection) -> Confirmation:
        store = RedemptionStore(conn)
        too_many = await _too_many_wrong_codes(store, settings, partner_id)
        if too_many is not None:
            return Confirmation(None, too_many)
        live = await store.live_by_code(code)
        if live is not None and live.partner_id == partner_id:
            refusal = check_resolution(Status.HELD, Resolution.CONFIRM, live.expires_at, datetime.now(UTC))
            # An expired hold is left to the expiry sweep (or the confirmation): looking changes nothing.
            return Confirmation(live, Refused(409, refusal) if refusal is not None else None)
        return await _not_live(store, settings, partner_id, code)

    outcome = await db.run(work)
    if outcome.refusal is not None:
        raise outcome.refusal
    assert outcome.redemption is not None
    return outcome.redemption


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


async def _expire_one(db: Database, settings: Settings) -> bool:
    """Expire the hold that is longest past its time, if any; False when none is due."""
    changes: Changes = []

    async def work(conn: Connection) -> bool:
        changes.clear()
        due = await RedemptionStore(conn).due_to_expire(1)
        for r in due:
            await _resolve(conn, settings, r, Resolution.EXPIRE, "expiry", changes)
        return bool(due)

    found = await db.run(work)
    _record(changes)
    return found


async def add_partner(db: Database, partner: Partner) -> tuple[Partner, bool]:
    async def work(conn: Connection) -> tuple[Partner, bool]:
        store = RedemptionStore(conn)
        created = await store.add_partner(partner)
        stored = await store.partner(partner.partner_id)
        assert stored is not None
        if stored != partner:
            raise _refused(
                409, "partner-exists", "Partner exists", f"partner_id: {partner.partner_id!r} exists with other details"
            )
        return stored, created

    return await db.run(work)


async def put_reward(db: Database, reward: Reward, create: bool) -> Reward:
    async def work(conn: Connection) -> Reward:
        store = RedemptionStore(conn)
        if await store.partner(reward.partner_id) is None:
            raise _refused(
                422,
                "partner-unknown",
                "Unknown partner",
                f"partner_id: no partner {reward.partner_id!r}; create it with POST /v1/partners",
            )
        existing = await store.reward(reward.reward_id)
        if create and existing is not None and existing != reward:
            raise _refused(
                409,
                "reward-exists",
                "Reward exists",
                f"reward_id: {reward.reward_id!r} exists; change it with PUT /v1/rewards/{reward.reward_id}",
            )
        if not create and existing is None:
            raise _refused(404, "reward-unknown", "Unknown reward", f"reward_id: no reward {reward.reward_id!r}")
        await store.put_reward(reward)
        return reward

    return await db.run(work)


def state_message(settings: Settings, r: Redemption) -> OutboxMessage:
    body = {
        "specversion": "1.0",
        "id": f"redemption-{r.redemption_id}-{r.status}",
        "source": "warmbee/redemption",
        "type": f"redemption.{r.status}",
        "subject": r.rider_id,
        "time": (r.resolved_at or r.created_at).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "redemption_id": r.redemption_id,
            "reward_id": r.reward_id,
            "partner_id": r.partner_id,
            "rider_id": r.rider_id,
            "cost": r.cost,
            "status": r.status,
            "expires_at": r.expires_at.isoformat(),
        },
    }
    return OutboxMessage(settings.topic_points_ledger, r.rider_id.encode(), orjson.dumps(body))
