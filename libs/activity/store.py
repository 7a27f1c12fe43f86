"""Activity events known to warmbee (the inbox) and dead letters. Shared by the events service,
which records what it accepts over HTTP, and the points worker, which records what Kafka brings."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from libs.activity.model import ActivityEvent, payload_text

Via = Literal["http", "kafka"]


@dataclass(frozen=True, slots=True)
class RecordResult:
    new: list[ActivityEvent]
    duplicates: list[ActivityEvent]  # the same event again (same content)
    conflicts: list[ActivityEvent]  # an id reused at its source for a different event


@dataclass(frozen=True, slots=True)
class DeadLetterInput:
    reason: str
    topic: str | None  # None: accepted over HTTP, then found unscorable (no Kafka position)
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    source: str | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    dead_letter_id: int
    payload: bytes  # the value as it came
    retried: bool
    source: str | None
    event_id: str | None


_INSERT_EVENTS = """
INSERT INTO activity_event (source, event_id, type, category, rider_id, occurred_at, content_hash, event,
                            received_via)
SELECT s, i, t, c, r, o, h, e, $9 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                            $6::timestamptz[], $7::text[], $8::jsonb[])
    AS u(s, i, t, c, r, o, h, e)
ON CONFLICT (source, event_id) DO NOTHING
RETURNING source, event_id
"""


class ActivityStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def record(self, events: Sequence[ActivityEvent], via: Via) -> RecordResult:
        """Store events not known yet; sort the rest into duplicates and reused ids."""
        first: dict[tuple[str, str], ActivityEvent] = {}
        repeats: list[ActivityEvent] = []
        for event in events:
            if event.key in first:
                repeats.append(event)
            else:
                first[event.key] = event
        batch = list(first.values())
        hashes = {e.key: e.content_hash for e in batch}
        rows = await self._conn.fetch(
            _INSERT_EVENTS,
            [e.source for e in batch],
            [e.event_id for e in batch],
            [e.type for e in batch],
            [e.category for e in batch],
            [e.rider_id for e in batch],
            [e.time for e in batch],
            list(hashes.values()),
            [dict(e.document) for e in batch],
            via,
        )
        inserted = {(r["source"], r["event_id"]) for r in rows}
        new = [e for e in batch if e.key in inserted]
        known = [e for e in batch if e.key not in inserted]
        stored = await self._stored_hashes([e.key for e in known])
        originals = {e.key: hashes[e.key] for e in new} | stored
        duplicates: list[ActivityEvent] = []
        conflicts: list[ActivityEvent] = []
        for event, content in [*((e, hashes[e.key]) for e in known), *((e, e.content_hash) for e in repeats)]:
            (duplicates if originals.get(event.key) == content else conflicts).append(event)
        return RecordResult(new, duplicates, conflicts)

    async def _stored_hashes(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        if not keys:
            return {}
        rows = await self._conn.fetch(
            "SELECT a.source, a.event_id, a.content_hash FROM activity_event a"
            " JOIN unnest($1::text[], $2::text[]) AS k(s, i) ON a.source = k.s AND a.event_id = k.i",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["source"], r["event_id"]): r["content_hash"] for r in rows}

    async def add_dead_letters(self, letters: Sequence[DeadLetterInput]) -> list[DeadLetterInput]:
        """Keep messages that failed validation; a redelivered message is kept once.
        Returns the letters kept now, so a redelivery does not publish its dead letters again."""
        if not letters:
            return []
        texts = [payload_text(d.value) for d in letters]
        hashes = [hashlib.sha256(d.value or b"").hexdigest() for d in letters]
        rows = await self._conn.fetch(
            'INSERT INTO dead_letter (reason, topic, "partition", "offset", key, source, event_id, payload,'
            " payload_encoding, payload_sha256)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::text[],"
            " $7::text[], $8::text[], $9::text[], $10::text[])"
            " ON CONFLICT ON CONSTRAINT dead_letter_message_unique DO NOTHING"
            ' RETURNING topic, "partition", "offset", payload_sha256',
            [d.reason for d in letters],
            [d.topic for d in letters],
            [d.partition for d in letters],
            [d.offset for d in letters],
            [payload_text(d.key)[0] if d.key is not None else None for d in letters],
            [d.source for d in letters],
            [d.event_id for d in letters],
            [t[0] for t in texts],
            [t[1] for t in texts],
            hashes,
        )
        kept = {(r["topic"], r["partition"], r["offset"], r["payload_sha256"]) for r in rows}
        out: list[DeadLetterInput] = []
        for letter, digest in zip(letters, hashes, strict=True):
            identity = (letter.topic, letter.partition, letter.offset, digest)
            if identity in kept:
                kept.discard(identity)
                out.append(letter)
        return out

    async def dead_letters(self, limit: int, before_id: int | None, waiting: bool = False) -> list[dict[str, Any]]:
        """Newest first; ``waiting``: only those no operator has retried yet."""
        rows = await self._conn.fetch(
            'SELECT dead_letter_id, received_at, reason, topic, "partition", "offset", key, source,'
            " event_id, payload, payload_encoding, retried_at FROM dead_letter"
            " WHERE ($1::bigint IS NULL OR dead_letter_id < $1) AND (NOT $3 OR retried_at IS NULL)"
            " ORDER BY dead_letter_id DESC LIMIT $2",
            before_id,
            limit,
            waiting,
        )
        return [dict(r) for r in rows]

    async def dead_letter_for_retry(self, dead_letter_id: int) -> StoredDeadLetter | None:
        """The dead letter, locked until the transaction ends (two operators retrying it at once: one waits)."""
        row = await self._conn.fetchrow(
            "SELECT payload, payload_encoding, retried_at IS NOT NULL AS retried, source, event_id"
            " FROM dead_letter WHERE dead_letter_id = $1 FOR UPDATE",
            dead_letter_id,
        )
        if row is None:
            return None
        payload = row["payload"]
        raw = base64.b64decode(payload) if row["payload_encoding"] == "base64" else payload.encode()
        return StoredDeadLetter(dead_letter_id, raw, row["retried"], row["source"], row["event_id"])

    async def settle_dead_letter(self, dead_letter_id: int, reason: str | None) -> None:
        """After a retry: ``reason`` None marks it retried (no longer waiting); else it stays, with that reason."""
        await self._conn.execute(
            "UPDATE dead_letter SET retried_at = CASE WHEN $2::text IS NULL THEN now() END,"
            " reason = coalesce($2, reason) WHERE dead_letter_id = $1",
            dead_letter_id,
            reason,
        )
