"""The notifications service's use cases: record the deliveries a batch of points-ledger events makes
(before the batch is acknowledged), and work through the deliveries that are due."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

import asyncpg
import orjson
import structlog
from cryptography.fernet import InvalidToken

from libs.platform.db import Database
from libs.platform.settings import Settings
from services.notifications import metrics
from services.notifications.domain.deliveries import Due, Outcome
from services.notifications.domain.kinds import LedgerEvent, ledger_event, may_hear
from services.notifications.domain.retries import gives_up, next_pause_s
from services.notifications.sealing import Sealer
from services.notifications.sender import Sender
from services.notifications.store import DeliveryWriter, Settled

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
    """Attempt the deliveries that are due (at most ``limit``) and record each outcome; how many.

    A pipeline, not batch after batch: while attempts are in flight, the outcomes of those that ended are
    recorded and the next deliveries claimed, in one transaction, so the sender's slots do not wait for
    the database, nor a whole batch for its slowest receiver. What this call has claimed and not finished
    is held to twice the in-flight limits, in all and per subscription: an attempt waits at most about two
    timeouts for its slots and takes at most one, inside the lease; a slow receiver's backlog is claimed
    no faster than it is sent."""
    in_flight = settings.webhook_in_flight
    lease_s = settings.webhook_timeout_s * 3 + 30
    sealer = Sealer.of(settings)
    secrets: dict[bytes, str | None] = {}  # unsealed once per call, not once per delivery
    held: dict[str, int] = {}  # claimed and unfinished, by subscription
    ended: list[tuple[Due, Outcome]] = []
    changed = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    in_flight_dues: dict[int, Due] = {}  # claimed, not yet ended (sending or waiting for a slot), by delivery

    async def attempt(due: Due, secret: str) -> None:
        try:
            outcome = await sender.attempt_bounded(due, secret)
            ended.append((due, outcome))  # the list of now, not of when the attempt began
        except Exception:  # attempt never raises for the receiver's doing; the lease brings it back
            log.exception("webhook.attempt_crashed", delivery_id=due.delivery_id)
        finally:
            in_flight_dues.pop(due.delivery_id, None)
            held[due.webhook_id] -= 1
            if not held[due.webhook_id]:
                del held[due.webhook_id]
            changed.set()

    async def cycle(conn: asyncpg.Connection, settled: list[Settled], room: int) -> list[tuple[Due, bytes]]:
        writer = DeliveryWriter(conn)
        await writer.settle(settled)
        return (
            await writer.claim_due(room, settings.webhook_in_flight_per_subscription * 2, lease_s, held) if room else []
        )

    claimed_n = 0
    claiming = True
    ended_since = 0.0
    try:
        while True:
            unfinished = sum(held.values())
            # Claim a batch when at most one is left queued behind the slots in flight.
            room = min(2 * in_flight - unfinished, limit - claimed_n) if claiming and unfinished <= in_flight else 0
            if ended and not ended_since:
                ended_since = time.monotonic()
            flush = bool(ended) and (
                not unfinished or len(ended) >= in_flight // 2 or time.monotonic() - ended_since > 0.2
            )
            if room > 0 or flush:
                done, ended = ended, []
                ended_since = 0.0
                settled = settled_outcomes(done, settings)
                claimed = await db.run(partial(cycle, settled=settled, room=room))
                _count(done, settled)
                if room > 0 and not claimed:
                    claiming = False  # nothing more is due now: finish what is in flight
                claimed_n += len(claimed)
                for due, sealed in claimed:
                    if sealed not in secrets:
                        secrets[sealed] = _unsealed(sealer, sealed)
                    secret = secrets[sealed]
                    if secret is None:  # not sent; an operator can retry it once the key is right
                        ended.append((due, Outcome(False, None, CANNOT_UNSEAL, 0.0)))
                        continue
                    held[due.webhook_id] = held.get(due.webhook_id, 0) + 1
                    in_flight_dues[due.delivery_id] = due
                    task = asyncio.create_task(attempt(due, secret))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                continue
            if not unfinished:
                return claimed_n
            changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await changed.wait()
    except asyncio.CancelledError:  # the sender is stopping: record what ended, give back what did not
        unfinished_ids = [due.delivery_id for due in in_flight_dues.values()]
        await _cancel(tasks)
        await _given_back(db, ended, settled_outcomes(ended, settings), unfinished_ids)
        raise
    finally:
        await _cancel(tasks)  # when the database failed: the leases bring them back


RELEASE_WITHIN_S = 2.0  # how long a stopping sender spends giving back what it held


async def _cancel(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _given_back(
    db: Database, done: Sequence[tuple[Due, Outcome]], settled: list[Settled], unfinished: list[int]
) -> None:
    """A stopping sender's last transaction, within ``RELEASE_WITHIN_S``: the outcomes it had not recorded
    yet, and the deliveries it had not finished given back (``DeliveryWriter.release``: due at once for
    the other senders, not when their leases end). If the database does not answer in time, the leases
    still bring them back, later, and the ended ones are sent again (at least once)."""
    if not (settled or unfinished):
        return

    async def work(conn: asyncpg.Connection) -> int:
        writer = DeliveryWriter(conn)
        await writer.settle(settled)
        return await writer.release(unfinished)

    try:
        async with asyncio.timeout(RELEASE_WITHIN_S):
            released = await db.run(work)
        _count(done, settled)
        log.info("webhook.given_back", recorded=len(settled), released=released)
    except Exception as exc:
        log.warning("webhook.give_back_failed", recorded=len(settled), unfinished=len(unfinished), error=repr(exc))


CANNOT_UNSEAL = "cannot unseal the subscription's secret: was WARMBEE_NOTIFY_SECRET_KEY changed?"


def _unsealed(sealer: Sealer, sealed: bytes) -> str | None:
    """The secret, or None when it was sealed under another key (the others' deliveries go on)."""
    try:
        return sealer.unseal(sealed)
    except InvalidToken:
        log.warning("webhook.cannot_unseal")
        return None


def settled_outcomes(done: Sequence[tuple[Due, Outcome]], settings: Settings) -> list[Settled]:
    """What to record of each outcome: delivered; tried again after a growing pause; or, once it has been
    retried for ``webhook_retry_for_s``, failed for good."""
    now = datetime.now(UTC)
    settled = []
    for due, outcome in done:
        if outcome.delivered:
            settled.append(Settled(due.delivery_id, True, outcome.status, None, None))
            continue
        last = gives_up((now - due.created_at).total_seconds(), settings.webhook_retry_for_s)
        retry_in_s = None if last else next_pause_s(due.attempts + 1)
        settled.append(Settled(due.delivery_id, False, outcome.status, outcome.error, retry_in_s))
    return settled


def _count(done: Sequence[tuple[Due, Outcome]], settled: Sequence[Settled]) -> None:
    """The metrics of outcomes just recorded (after the commit: a rolled-back cycle counts nothing)."""
    now = datetime.now(UTC)
    for (due, outcome), record in zip(done, settled, strict=True):
        if outcome.delivered:
            metrics.DELIVERIES.labels(due.webhook_kind, "delivered").inc()
            metrics.EVENT_TO_DELIVERY.observe((now - due.created_at).total_seconds())
        elif record.retry_in_s is None:
            metrics.DELIVERIES.labels(due.webhook_kind, "failed").inc()
            log.warning("webhook.failed", delivery_id=due.delivery_id, webhook_id=due.webhook_id, error=outcome.error)


async def measure_backlog(db: Database) -> None:
    async with db.read() as conn:
        oldest, failing = await DeliveryWriter(conn).backlog()
    metrics.OLDEST_PENDING.set(oldest)
    metrics.FAILING_SUBSCRIPTIONS.set(failing)
