"""The notifications service's use cases: record the deliveries a batch of points-ledger events makes
(before the batch is acknowledged), and work through the deliveries that are due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import orjson
import structlog

from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications import metrics
from services.notifications.domain.kinds import LedgerEvent, ledger_event, may_hear
from services.notifications.domain.retries import gives_up, next_pause_s
from services.notifications.sealing import Sealer
from services.notifications.sender import Sender
from services.notifications.store import DeliveryWriter

log = structlog.get_logger(__name__)


def read_events(values: Sequence[bytes | None]) -> list[tuple[LedgerEvent, str]]:
    """The events of a batch a subscriber can ask for, each with its JSON as it came (what is sent);
    anything else on the topic is passed over (it is not ours to refuse: the ledger wrote it)."""
    events = []
    for value in values:
        try:
            body = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            log.warning("notifications.unreadable_message", size=len(value or b""))
            continue
        event = ledger_event(body) if isinstance(body, dict) else None
        if event is not None:
            events.append((event, (value or b"").decode()))
    return events


async def record_deliveries(db: Database, values: Sequence[bytes | None]) -> int:
    """One delivery row per (subscription, event) that the subscription may hear of, in one transaction:
    the caller acknowledges the messages only after it commits. The same messages again add nothing."""
    return await record_deliveries_of(db, read_events(values))


async def record_deliveries_of(db: Database, events: Sequence[tuple[LedgerEvent, str]]) -> int:
    """``record_deliveries`` of events already read."""
    if not events:
        return 0

    async def work(conn: asyncpg.Connection) -> int:
        writer = DeliveryWriter(conn)
        subscriptions = await writer.listening()
        if not subscriptions:
            return 0
        unnamed = [e.redemption_id for e, _ in events if e.redemption_id and not e.partner_id]
        partners = await writer.partners_of(unnamed)
        rows = [
            (s.webhook_id, event.event_id, event.kind, body)
            for event, body in events
            for s in subscriptions
            if event.kind in s.kinds
            and may_hear(s.owner_role, s.owner_id, event, event.partner_id or partners.get(event.redemption_id or ""))
        ]
        return await writer.record(rows)

    recorded = await db.run(work)
    metrics.DELIVERIES_RECORDED.inc(recorded)
    return recorded


async def send_due(db: Database, settings: Settings, sender: Sender, limit: int) -> int:
    """Attempt the deliveries that are due (at most ``limit``), then record each outcome; how many."""
    # At most as many as may be in flight, each subscription's within its own bound: every attempt starts
    # at once and ends within the timeout, well inside the lease.
    lease_s = settings.webhook_timeout_s * 2 + 30
    per_subscription = settings.webhook_in_flight_per_subscription
    limit = min(limit, settings.webhook_in_flight)
    claimed = await db.run(lambda conn: DeliveryWriter(conn).claim_due(limit, per_subscription, lease_s))
    if not claimed:
        return 0
    sealer = Sealer.of(settings)
    outcomes = await sender.attempt_all([(due, sealer.unseal(sealed)) for due, sealed in claimed])

    async def record(conn: asyncpg.Connection) -> None:
        writer = DeliveryWriter(conn)
        now = datetime.now(UTC)
        for due, outcome in outcomes:
            if outcome.delivered:
                await writer.delivered(due.delivery_id, outcome.status)
                metrics.DELIVERIES.labels(due.webhook_kind, "delivered").inc()
                metrics.EVENT_TO_DELIVERY.observe((now - due.created_at).total_seconds())
                continue
            attempts = due.attempts + 1
            last = gives_up((now - due.created_at).total_seconds(), settings.webhook_retry_for_s)
            await writer.attempt_failed(
                due.delivery_id, outcome.status, outcome.error, None if last else next_pause_s(attempts)
            )
            if last:
                metrics.DELIVERIES.labels(due.webhook_kind, "failed").inc()
                log.warning(
                    "webhook.failed", delivery_id=due.delivery_id, webhook_id=due.webhook_id, error=outcome.error
                )

    await db.run(record)
    return len(claimed)


async def measure_backlog(db: Database) -> None:
    async with db.read() as conn:
        oldest, failing = await DeliveryWriter(conn).backlog()
    metrics.OLDEST_PENDING.set(oldest)
    metrics.FAILING_SUBSCRIPTIONS.set(failing)
