"""Use cases of disputes (申诉): a rider opens one on its own entry, an operator resolves it once.

Each runs in one transaction: the dispute's row, the adjustment of an upheld one (through the ledger's
own writer, so a balance never goes below zero) and the ``points-ledger`` events in the outbox commit
together, or nothing does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from libs.i18n.problems import P_, says
from libs.ledger.feed import entries_reference
from libs.ledger.store import IdempotencyConflict, InsufficientBalance, LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.errors import DomainError
from libs.platform.outbox_store import OutboxMessage, OutboxStore
from libs.platform.settings import Settings
from services.points.dispute_store import DisputedEntry, DisputeStore, Waiting
from services.points.domain.disputes import (
    Dispute,
    Resolution,
    Status,
    dispute_event,
    is_retry,
    may_open,
    may_resolve,
    new_dispute_id,
    opening_hash,
    upheld_adjustment,
)
from services.points.handlers import with_lot


@dataclass(frozen=True, slots=True)
class Opened:
    dispute: Dispute
    created: bool  # False: the same opening sent again (a retry), nothing changed


@dataclass(frozen=True, slots=True)
class DisputeView:
    """A dispute with the entry it is about (and, for an award, the event that entry scored)."""

    dispute: Dispute
    entry: DisputedEntry | None


def _unknown_entry(entry_id: int) -> DomainError:
    # The same answer for an entry of another rider as for none: an id tells nobody else's history.
    return DomainError(
        says(P_("entry_id: you have no entry {entry_id}; take the entry_id from your history"), entry_id=entry_id),
        kind="entry-unknown",
    )


def unknown_dispute(dispute_id: str) -> DomainError:
    return DomainError(
        says(P_("no dispute {dispute_id} is known to you"), dispute_id=dispute_id[:100]), kind="dispute-unknown"
    )


async def open_dispute(
    db: Database, settings: Settings, rider_id: str, idempotency_key: str, entry_id: int, message: str
) -> Opened:
    """Open a dispute on one of the rider's own entries; the same key and body again return the first."""
    said = opening_hash(entry_id, message)

    async def work(conn: Connection) -> Opened:
        store = DisputeStore(conn)
        await store.lock_rider(rider_id)
        earlier = await store.by_key(rider_id, idempotency_key)
        if earlier is not None:
            if earlier[1] != said:
                raise IdempotencyConflict(
                    idempotency_key, "Idempotency-Key: this key opened a different dispute; use a new key"
                )
            return Opened(earlier[0], created=False)
        entry = await store.entry(entry_id)
        if entry is None or entry.rider_id != rider_id:
            raise _unknown_entry(entry_id)
        may_open(await store.open_on(entry_id), entry_id)
        dispute = await store.add(
            Dispute(new_dispute_id(), entry_id, rider_id, message, Status.OPEN, datetime.now(UTC), idempotency_key),
            said,
        )
        await OutboxStore(conn).add([_event(settings, "dispute.opened", dispute)])
        return Opened(dispute, created=True)

    return await db.run(work)


async def resolve_dispute(
    db: Database, settings: Settings, operator: str, resolve_key: str, dispute_id: str, resolution: Resolution
) -> Dispute:
    """Resolve an open dispute exactly once: the row is locked, so of two operators at the same moment one
    resolves it and the other is told it is resolved. The same operator's same request again (a retry with
    its Idempotency-Key) returns the dispute as resolved."""

    async def work(conn: Connection) -> Dispute:
        store = DisputeStore(conn)
        dispute = await store.get(dispute_id, for_update=True)
        if dispute is None:
            raise unknown_dispute(dispute_id)
        if is_retry(dispute, operator, resolve_key, resolution):
            return dispute
        may_resolve(dispute)
        adjustment_id = None
        outbox = OutboxStore(conn)
        if resolution.amount:
            adjustment_id = await _post_adjustment(conn, dispute, resolution, operator)
            await outbox.add([entries_reference(settings.topic_points_ledger, [adjustment_id])])
        resolved = await store.resolve(dispute_id, resolution, operator, resolve_key, adjustment_id)
        await outbox.add([_event(settings, "dispute.resolved", resolved)])
        return resolved

    return await db.run(work)


async def _post_adjustment(conn: Connection, dispute: Dispute, resolution: Resolution, operator: str) -> int:
    assert resolution.amount is not None
    tx = upheld_adjustment(dispute, resolution.amount, resolution.reply, operator)
    tx = await with_lot(conn, tx, datetime.now(UTC))
    try:
        appended = await LedgerStore(conn).append([tx])
    except InsufficientBalance as exc:
        raise InsufficientBalance(
            says(
                P_("amount: {amount} is more than the rider's available balance; uphold with a smaller amount"),
                amount=resolution.amount,
            )
        ) from exc
    if tx.idempotency_key not in appended.recorded:  # the dispute is open, so its adjustment cannot exist yet
        raise AssertionError(f"dispute {dispute.dispute_id} is open but has an adjustment")
    return appended.recorded[tx.idempotency_key]


async def disputes(
    db: Database, rider_id: str | None, status: Status | None, after_seq: int | None, limit: int
) -> list[tuple[int, DisputeView]]:
    """A page of disputes, oldest first, with their entries: one rider's (``rider_id``) or everyone's."""
    async with db.read() as conn:
        store = DisputeStore(conn)
        page = await store.page(rider_id, status, after_seq, limit)
        entries = await store.entries(sorted({d.entry_id for _, d in page}))
    return [(seq, DisputeView(d, entries.get(d.entry_id))) for seq, d in page]


async def dispute(db: Database, dispute_id: str) -> DisputeView | None:
    async with db.read() as conn:
        store = DisputeStore(conn)
        found = await store.get(dispute_id)
        return None if found is None else DisputeView(found, await store.entry(found.entry_id))


async def waiting(db: Database) -> Waiting:
    """How many disputes are open and since when the oldest waits (for the metrics)."""
    async with db.read() as conn:
        return await DisputeStore(conn).waiting()


def _event(settings: Settings, kind: str, dispute: Dispute) -> OutboxMessage:
    body = dispute_event(kind, dispute, datetime.now(UTC))
    return OutboxMessage(settings.topic_points_ledger, dispute.rider_id.encode(), orjson.dumps(body))
