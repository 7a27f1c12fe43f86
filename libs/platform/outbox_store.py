"""The transactional outbox: messages written with the change that caused them, relayed to Kafka later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, str], ...] = ()


# A reference row stands for many messages that the relay renders when it publishes (the header names
# what kind of reference it is; the value is a JSON list of what it refers to, one message each): a batch
# of 1,000 ledger entries is one row to write, claim and mark, not 1,000.
REFERENCE_HEADER = "warmbee-outbox-reference"


def reference(topic: str, kind: str, value: bytes) -> OutboxMessage:
    return OutboxMessage(topic, None, value, ((REFERENCE_HEADER, kind),))


def reference_kind(message: OutboxMessage) -> str | None:
    return next((v for k, v in message.headers if k == REFERENCE_HEADER), None)


@dataclass(frozen=True, slots=True)
class PendingMessage:
    outbox_id: int
    message: OutboxMessage


@dataclass(frozen=True, slots=True)
class Backlog:
    waiting: int  # messages: a reference row counts the messages it stands for
    oldest_age_s: float  # of the oldest row waiting; 0 when none waits
    parked: int  # rows


@dataclass(frozen=True, slots=True)
class ParkedRow:
    outbox_id: int
    topic: str
    key: bytes | None
    size: int  # bytes of key and value
    created_at: datetime
    parked_at: datetime
    reason: str


class OutboxStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def add(self, messages: Sequence[OutboxMessage]) -> None:
        if not messages:
            return
        await self._conn.execute(
            "INSERT INTO outbox (topic, key, value, headers)"
            " SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::jsonb[])",
            [m.topic for m in messages],
            [m.key for m in messages],
            [m.value for m in messages],
            [dict(m.headers) for m in messages],  # a JSON object: a list would read as an array dimension
        )

    async def claim(self, topics: Sequence[str], limit: int, references: Sequence[str] = ()) -> list[PendingMessage]:
        """Lock the oldest unrelayed messages; other relays skip them until this transaction ends.
        Reference rows are claimed only by a relay that can render their kind (``references``)."""
        rows = await self._conn.fetch(
            "SELECT outbox_id, topic, key, value, headers FROM outbox"
            " WHERE relayed_at IS NULL AND parked_at IS NULL AND topic = ANY($1::text[])"
            f"   AND (headers->>'{REFERENCE_HEADER}' IS NULL OR headers->>'{REFERENCE_HEADER}' = ANY($3::text[]))"
            " ORDER BY outbox_id LIMIT $2 FOR UPDATE SKIP LOCKED",
            list(topics),
            limit,
            list(references),
        )
        return [
            PendingMessage(
                r["outbox_id"],
                OutboxMessage(r["topic"], r["key"], r["value"], tuple(r["headers"].items())),
            )
            for r in rows
        ]

    async def mark_relayed(self, outbox_ids: Sequence[int]) -> None:
        await self._conn.execute(
            "UPDATE outbox SET relayed_at = now() WHERE outbox_id = ANY($1::bigint[])", list(outbox_ids)
        )

    async def park(self, reasons: Mapping[int, str]) -> dict[int, str]:
        """Park these rows (outbox id: why it can never be published as it is): claims skip them until
        ``unpark``. Returns the rows parked now with their topics (one already parked or relayed is left
        as it is, so parking twice is parking once)."""
        if not reasons:
            return {}
        rows = await self._conn.fetch(
            "UPDATE outbox o SET parked_at = now(), park_reason = p.reason"
            " FROM unnest($1::bigint[], $2::text[]) AS p(outbox_id, reason)"
            " WHERE o.outbox_id = p.outbox_id AND o.parked_at IS NULL AND o.relayed_at IS NULL"
            " RETURNING o.outbox_id, o.topic",
            list(reasons),
            list(reasons.values()),
        )
        return {r["outbox_id"]: r["topic"] for r in rows}

    async def parked(self, topic: str | None = None, limit: int = 100) -> list[ParkedRow]:
        """Parked rows, oldest first, of ``topic`` or of every topic."""
        rows = await self._conn.fetch(
            "SELECT outbox_id, topic, key, octet_length(key) AS key_bytes, octet_length(value) AS value_bytes,"
            " created_at, parked_at, park_reason FROM outbox"
            " WHERE parked_at IS NOT NULL AND relayed_at IS NULL AND ($1::text IS NULL OR topic = $1)"
            " ORDER BY outbox_id LIMIT $2",
            topic,
            limit,
        )
        return [
            ParkedRow(
                r["outbox_id"],
                r["topic"],
                r["key"],
                (r["key_bytes"] or 0) + r["value_bytes"],
                r["created_at"],
                r["parked_at"],
                r["park_reason"],
            )
            for r in rows
        ]

    async def unpark(self, outbox_ids: Sequence[int] | None) -> list[int]:
        """Put parked rows back in line (``None``: every parked row); returns the ids unparked. A row
        that still cannot be published is parked again by the next relay that claims it."""
        rows = await self._conn.fetch(
            "UPDATE outbox SET parked_at = NULL, park_reason = NULL"
            " WHERE parked_at IS NOT NULL AND relayed_at IS NULL"
            "   AND ($1::bigint[] IS NULL OR outbox_id = ANY($1::bigint[]))"
            " RETURNING outbox_id",
            None if outbox_ids is None else list(outbox_ids),
        )
        return sorted(r["outbox_id"] for r in rows)

    async def backlog_by_topic(self, topics: Sequence[str]) -> dict[str, Backlog]:
        """Per topic (each of ``topics``, zeros when none waits): the messages waiting (a reference row
        counts the messages it stands for), the oldest one's age in seconds, and the rows parked. A parked
        row is not waiting: counted there, an alert on the oldest age would fire until someone retried it."""
        rows = await self._conn.fetch(
            "SELECT t.topic,"
            " coalesce(sum(CASE WHEN o.outbox_id IS NULL OR o.parked_at IS NOT NULL THEN 0"
            f"                  WHEN o.headers ? '{REFERENCE_HEADER}'"
            "                  THEN jsonb_array_length(convert_from(o.value, 'UTF8')::jsonb) ELSE 1 END), 0) AS n,"
            " coalesce(extract(epoch FROM clock_timestamp()"
            "          - min(o.created_at) FILTER (WHERE o.parked_at IS NULL)), 0) AS age,"
            " count(o.parked_at) AS parked"
            " FROM unnest($1::text[]) AS t(topic)"
            " LEFT JOIN outbox o ON o.topic = t.topic AND o.relayed_at IS NULL"
            " GROUP BY t.topic",
            list(topics),
        )
        return {r["topic"]: Backlog(int(r["n"]), max(float(r["age"]), 0.0), int(r["parked"])) for r in rows}

    async def purge_relayed(self, topics: Sequence[str], older_than_s: int) -> int:
        status = await self._conn.execute(
            "DELETE FROM outbox WHERE topic = ANY($1::text[]) AND relayed_at < now() - make_interval(secs => $2)",
            list(topics),
            older_than_s,
        )
        return int(status.split()[-1])
