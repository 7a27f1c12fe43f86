"""The transactional outbox: messages written with the change that caused them, relayed to Kafka later."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
            " WHERE relayed_at IS NULL AND topic = ANY($1::text[])"
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

    async def backlog_by_topic(self, topics: Sequence[str]) -> dict[str, tuple[int, float]]:
        """Per topic (each of ``topics``, 0 when none waits): unrelayed messages (a reference row counts
        the messages it stands for) and the oldest one's age in seconds."""
        rows = await self._conn.fetch(
            "SELECT t.topic,"
            " coalesce(sum(CASE WHEN o.outbox_id IS NULL THEN 0"
            f"                  WHEN o.headers ? '{REFERENCE_HEADER}'"
            "                  THEN jsonb_array_length(convert_from(o.value, 'UTF8')::jsonb) ELSE 1 END), 0) AS n,"
            " coalesce(extract(epoch FROM clock_timestamp() - min(o.created_at)), 0) AS age"
            " FROM unnest($1::text[]) AS t(topic)"
            " LEFT JOIN outbox o ON o.topic = t.topic AND o.relayed_at IS NULL"
            " GROUP BY t.topic",
            list(topics),
        )
        return {r["topic"]: (int(r["n"]), max(float(r["age"]), 0.0)) for r in rows}

    async def purge_relayed(self, topics: Sequence[str], older_than_s: int) -> int:
        status = await self._conn.execute(
            "DELETE FROM outbox WHERE topic = ANY($1::text[]) AND relayed_at < now() - make_interval(secs => $2)",
            list(topics),
            older_than_s,
        )
        return int(status.split()[-1])
