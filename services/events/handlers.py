"""Use cases of the events service. Each opens and commits its own transaction (``Database.run``): the
inbox rows and their outbox rows commit together, so an accepted event is always relayed, even if the
broker is down now. A refusal raises a ``DomainError`` from ``domain/intake.py`` and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson

from libs.activity.model import RECEIVED_VIA_HEADER, ActivityEvent, EventSchemas, Invalid, validate_message
from libs.activity.store import ActivityStore
from libs.ledger.store import LedgerStore
from libs.platform.db import Connection, Database
from libs.platform.outbox_store import OutboxMessage, OutboxStore
from services.events.domain import intake
from services.events.domain.intake import REUSED_ID, DeadLetterUnknown, ReusedEventId

EventStatusName = Literal["pending", "scored", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class Publish:
    """A source's request: its documents (one event or a batch), the token's sub, and whether the body was
    large enough to hold an event over the size limit."""

    documents: Sequence[object]
    source: str
    may_hold_large_event: bool


@dataclass(frozen=True, slots=True)
class Accepted:
    accepted: int
    duplicates: int
    new: tuple[ActivityEvent, ...] = field(default=(), compare=False)  # which they were, for metrics and logs
    duplicate: tuple[ActivityEvent, ...] = field(default=(), compare=False)


def relay_message(event: ActivityEvent, topic: str) -> OutboxMessage:
    return OutboxMessage(
        topic=topic,
        key=event.rider_id.encode(),
        value=orjson.dumps(event.document),
        headers=((RECEIVED_VIA_HEADER, "http"),),
    )


async def publish(
    db: Database, command: Publish, schemas: EventSchemas, future_slack: timedelta, topic: str
) -> Accepted:
    """Admit a source's events (all valid, all its own) and accept them, or refuse the whole request."""
    events = intake.admit(
        command.documents, command.source, schemas, datetime.now(UTC), future_slack, command.may_hold_large_event
    )
    return await accept_events(db, events, topic)


async def accept_events(db: Database, events: Sequence[ActivityEvent], topic: str) -> Accepted:
    """Record valid events in the inbox and queue the new ones for the worker; an id reused for a different
    event refuses them all (``ReusedEventId``)."""

    async def work(conn: Connection) -> Accepted:
        recorded = await ActivityStore(conn).record(events, via="http")
        if recorded.conflicts:
            raise ReusedEventId(recorded.conflicts, events)
        await OutboxStore(conn).add([relay_message(e, topic) for e in recorded.new])
        return Accepted(len(recorded.new), len(recorded.duplicates), tuple(recorded.new), tuple(recorded.duplicates))

    return await db.run(work)


async def retry_dead_letter(
    db: Database, dead_letter_id: int, schemas: EventSchemas, future_slack: timedelta, topic: str
) -> EventStatusName:
    """Validate a dead letter's payload again and, if it passes now, accept it as if just sent (the inbox,
    and the outbox towards the worker, which scores it unless it was scored meanwhile). Returns the event's
    status now: ``pending``, ``scored`` or ``dead_lettered`` (it still fails; the reason is the new one).
    ``DeadLetterUnknown`` if there is no such dead letter."""

    async def work(conn: Connection) -> EventStatusName:
        store = ActivityStore(conn)
        letter = await store.dead_letter_for_retry(dead_letter_id)
        if letter is None:
            raise DeadLetterUnknown(dead_letter_id)
        result = validate_message(letter.payload, schemas, datetime.now(UTC), future_slack)
        if isinstance(result, Invalid):
            await store.settle_dead_letter(dead_letter_id, result.reason)
            return "dead_lettered"
        recorded = await store.record([result], via="http")
        if recorded.conflicts:
            await store.settle_dead_letter(dead_letter_id, f"id: {REUSED_ID}")
            return "dead_lettered"
        await store.settle_dead_letter(dead_letter_id, None)
        if not await LedgerStore(conn).awarded([result.key]):
            # Through Kafka again, also when it was stored before: the worker scores what has no award yet.
            await OutboxStore(conn).add([relay_message(result, topic)])
            return "pending"
        return "scored"

    return await db.run(work)
