"""Small factories and read-only queries shared by the integration tests.

Every test shares one database, so everything made here is unique: event ids are uuids and Kafka
offsets come from one counter, so a dead letter of one test never collides with another's.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from libs.activity.model import ActivityEvent, Invalid, load_schemas, validate_event
from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import Database
from libs.platform.kafka import MadeRecord
from libs.platform.outbox_store import OutboxMessage, reference_kind

SCHEMAS = load_schemas()
SOURCE = "volunteer-platform"
ACTIVITY_TOPIC = "activity-events"

_offsets = itertools.count(1)


def new_id(prefix: str = "evt") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


# --- events ----------------------------------------------------------------------------------------


def volunteer_shift(
    rider: str,
    hours: Any,
    time: str = "2024-05-01T09:00:00+08:00",
    event_id: str | None = None,
    source: str = SOURCE,
) -> dict[str, Any]:
    """A ``volunteer.shift.completed`` CloudEvent: ``hours`` as verified by the organiser."""
    return {
        "specversion": "1.0",
        "id": event_id or new_id("shift"),
        "source": source,
        "type": "volunteer.shift.completed",
        "subject": rider,
        "time": time,
        "datacontenttype": "application/json",
        "data": {"shift_id": new_id("s"), "hours": hours},
    }


def civic_action(rider: str, action: str = "litter_pickup", time: str = "2024-05-01T09:00:00+08:00") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": new_id("civic"),
        "source": "grid-office",
        "type": "civic.action.verified",
        "subject": rider,
        "time": time,
        "data": {"action": action},
    }


def activity_event(document: dict[str, Any]) -> ActivityEvent:
    """The document validated as the services do it; the factories only make valid ones."""
    result = validate_event(document, SCHEMAS, datetime.now(UTC))
    assert not isinstance(result, Invalid), result.reason
    return result


# --- Kafka records (no broker: they satisfy libs.platform.kafka.Message) -----------------------------


KafkaRecord = MadeRecord


def record(value: dict[str, Any] | list[Any] | bytes | None, key: str | None, partition: int = 0) -> KafkaRecord:
    """A record on ``activity-events`` at a fresh offset; a dict or list is sent as JSON."""
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return KafkaRecord(
        topic=ACTIVITY_TOPIC,
        partition=partition,
        offset=next(_offsets),
        key=key.encode() if key is not None else None,
        value=raw,
        timestamp=int(datetime.now(UTC).timestamp() * 1000),
    )


def next_offset() -> int:
    return next(_offsets)


# --- reads -------------------------------------------------------------------------------------------


async def available(db: Database, rider: str) -> int:
    async with db.read() as conn:
        value = await conn.fetchval("SELECT available FROM rider_balance WHERE rider_id = $1", rider)
    return int(value or 0)


async def entry_count(db: Database, rider: str) -> int:
    async with db.read() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM ledger_transaction WHERE rider_id = $1", rider))


async def awards(db: Database, rider: str) -> list[int]:
    """The amounts awarded to the rider, oldest first."""
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT available_delta FROM ledger_transaction WHERE rider_id = $1 AND kind = 'award' ORDER BY tx_id",
            rider,
        )
    return [r["available_delta"] for r in rows]


async def counters(db: Database, rider: str) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.fetch("SELECT counter, value FROM rider_counter WHERE rider_id = $1", rider)
    return {r["counter"]: r["value"] for r in rows}


async def outbox(db: Database, topic: str, key: str) -> list[dict[str, Any]]:
    """Outbox rows of one topic with this Kafka key (the rider), oldest first."""
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT outbox_id, topic, key, value, headers FROM outbox WHERE topic = $1 AND key = $2 ORDER BY outbox_id",
            topic,
            key.encode(),
        )
    return [dict(r) for r in rows]


async def published(db: Database, topic: str, key: str) -> list[OutboxMessage]:
    """The messages the outbox holds for this topic and Kafka key (the rider), oldest first, with its
    reference rows rendered as the relay renders them."""
    async with db.read() as conn:
        rows = await conn.fetch(
            "SELECT topic, key, value, headers FROM outbox WHERE topic = $1 ORDER BY outbox_id", topic
        )
        found: list[OutboxMessage] = []
        for r in rows:
            row = OutboxMessage(r["topic"], r["key"], r["value"], tuple(r["headers"].items()))
            messages = await render_entries(conn, row) if reference_kind(row) == ENTRIES else [row]
            found += [m for m in messages if m.key == key.encode()]
    return found


async def dead_letters(db: Database, key: str) -> list[dict[str, Any]]:
    """Dead letters of messages sent with this Kafka key, oldest first."""
    async with db.read() as conn:
        rows = await conn.fetch(
            'SELECT reason, topic, "partition", "offset", key, source, event_id, payload, payload_encoding'
            " FROM dead_letter WHERE key = $1 ORDER BY dead_letter_id",
            key,
        )
    return [dict(r) for r in rows]
