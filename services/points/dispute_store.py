"""SQL of disputes (申诉): the dispute rows, the entries and events they are about, and their measures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from libs.ledger.store import Entry, LedgerStore
from libs.platform.locks import lock
from services.points.domain.disputes import Dispute, Outcome, Resolution, Status

_COLUMNS = """seq, dispute_id, entry_id, rider_id, message, status, idempotency_key, created_at, outcome, amount,
              reply, resolved_by, resolve_key, resolved_at, adjustment_entry_id"""


@dataclass(frozen=True, slots=True)
class DisputedEntry:
    """The entry a dispute is about, with the event it scored (for an award), as an operator weighs it."""

    rider_id: str
    entry: Entry
    event: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Waiting:
    open: int
    oldest_created_at: datetime | None


class DisputeStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def lock_rider(self, rider_id: str) -> None:
        """A rider's openings one at a time: the one-open-per-entry and key checks then hold."""
        await lock(self._conn, [f"disputes:{rider_id}"])

    async def entry(self, entry_id: int) -> DisputedEntry | None:
        return (await self.entries([entry_id])).get(entry_id)

    async def by_key(self, rider_id: str, idempotency_key: str) -> tuple[Dispute, str] | None:
        """The dispute a rider opened with this key, and the hash of what the opening said."""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS}, opening_hash FROM dispute WHERE rider_id = $1 AND idempotency_key = $2",
            rider_id,
            idempotency_key,
        )
        return None if row is None else (_dispute(row), row["opening_hash"])

    async def open_on(self, entry_id: int) -> Dispute | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM dispute WHERE entry_id = $1 AND status = 'open'", entry_id
        )
        return None if row is None else _dispute(row)

    async def add(self, dispute: Dispute, opening_hash: str) -> Dispute:
        row = await self._conn.fetchrow(
            "INSERT INTO dispute (dispute_id, entry_id, rider_id, message, idempotency_key, opening_hash)"
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            dispute.dispute_id,
            dispute.entry_id,
            dispute.rider_id,
            dispute.message,
            dispute.idempotency_key,
            opening_hash,
        )
        assert row is not None
        return _dispute(row)

    async def get(self, dispute_id: str, *, for_update: bool = False) -> Dispute | None:
        lock_clause = " FOR UPDATE" if for_update else ""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM dispute WHERE dispute_id = $1{lock_clause}", dispute_id
        )
        return None if row is None else _dispute(row)

    async def resolve(
        self, dispute_id: str, resolution: Resolution, operator: str, resolve_key: str, adjustment_entry_id: int | None
    ) -> Dispute:
        """Resolve an open dispute (the caller holds its row lock and checked it is open)."""
        row = await self._conn.fetchrow(
            "UPDATE dispute SET status = 'resolved', outcome = $2, amount = $3, reply = $4, resolved_by = $5,"
            " resolve_key = $6, resolved_at = now(), adjustment_entry_id = $7"
            f" WHERE dispute_id = $1 AND status = 'open' RETURNING {_COLUMNS}",
            dispute_id,
            resolution.outcome.value,
            resolution.amount if resolution.outcome is Outcome.UPHELD else None,
            resolution.reply,
            operator,
            resolve_key,
            adjustment_entry_id,
        )
        assert row is not None, "resolve() is called on an open dispute whose row the caller locked"
        return _dispute(row)

    async def page(
        self, rider_id: str | None, status: Status | None, after_seq: int | None, limit: int
    ) -> list[tuple[int, Dispute]]:
        """Disputes oldest first (open ones are answered in the order they came), of one rider or all,
        of one status or both, after ``after_seq``: with their ``seq``, the page's cursor."""
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM dispute"
            " WHERE ($1::text IS NULL OR rider_id = $1) AND ($2::text IS NULL OR status = $2)"
            "   AND ($3::bigint IS NULL OR seq > $3)"
            " ORDER BY seq LIMIT $4",
            rider_id,
            status.value if status else None,
            after_seq,
            limit,
        )
        return [(r["seq"], _dispute(r)) for r in rows]

    async def entries(self, entry_ids: Sequence[int]) -> dict[int, DisputedEntry]:
        found = await LedgerStore(self._conn).entries_by_id(entry_ids)
        awards = [(e.source, e.event_id) for _, e in found.values() if e.kind == "award" and e.source and e.event_id]
        rows = await self._conn.fetch(
            "SELECT a.source, a.event_id, a.event FROM activity_event a"
            " JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)"
            "   ON a.source = k.source AND a.event_id = k.event_id",
            [source for source, _ in awards],
            [event_id for _, event_id in awards],
        )
        events = {(r["source"], r["event_id"]): r["event"] for r in rows}
        return {
            tx_id: DisputedEntry(rider_id, e, events.get((e.source or "", e.event_id or "")))
            for tx_id, (rider_id, e) in found.items()
        }

    async def waiting(self) -> Waiting:
        row = await self._conn.fetchrow(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM dispute WHERE status = 'open'"
        )
        assert row is not None  # an aggregate always has its row
        return Waiting(row["n"], row["oldest"])


def _dispute(r: asyncpg.Record) -> Dispute:
    return Dispute(
        dispute_id=r["dispute_id"],
        entry_id=r["entry_id"],
        rider_id=r["rider_id"],
        message=r["message"],
        status=Status(r["status"]),
        created_at=r["created_at"],
        idempotency_key=r["idempotency_key"],
        outcome=Outcome(r["outcome"]) if r["outcome"] else None,
        amount=r["amount"],
        reply=r["reply"],
        resolved_by=r["resolved_by"],
        resolve_key=r["resolve_key"],
        resolved_at=r["resolved_at"],
        adjustment_entry_id=r["adjustment_entry_id"],
    )
