"""The ledger as events: every entry becomes a CloudEvent on ``points-ledger`` for other systems to follow.

Entries are published by reference. The transaction that records them adds one outbox row naming their
ids; the relay renders the events from the ledger itself when it publishes. A batch of 1,000 awards is
one outbox row to write, claim and mark, and the event says exactly what the ledger holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from libs.ledger.store import FeedEntry, LedgerStore
from libs.platform.outbox_store import OutboxMessage, reference

ENTRIES = "ledger-entries"  # the outbox reference kind: a JSON list of tx ids


def entries_reference(topic: str, tx_ids: Sequence[int]) -> OutboxMessage:
    """The outbox row that stands for the events of these entries."""
    return reference(topic, ENTRIES, orjson.dumps(sorted(tx_ids)))


def entry_event(topic: str, entry: FeedEntry) -> OutboxMessage:
    """One entry as a CloudEvent, keyed by its rider (a rider's entries stay in order)."""
    body = {
        "specversion": "1.0",
        "id": f"entry-{entry.tx_id}",
        "source": "warmbee/points",
        "type": f"points.{entry.kind}.recorded",
        "subject": entry.rider_id,
        "time": entry.recorded_at,  # orjson writes RFC 3339 itself, faster than isoformat()
        "datacontenttype": "application/json",
        "data": {
            "entry_id": entry.tx_id,
            "kind": entry.kind,
            "amount": entry.amount,
            "category": entry.category,
            "source": entry.source,
            "event_id": entry.event_id,
            "rule_id": entry.rule_id,
            "rule_version": entry.rule_version,
            "reason": entry.reason.render("en"),  # for readers that do not render codes
            "reason_code": entry.reason.code,
            "reason_params": entry.reason.params,
        },
    }
    return OutboxMessage(topic, entry.rider_id.encode(), orjson.dumps(body))


async def render_entries(conn: asyncpg.Connection, row: OutboxMessage) -> list[OutboxMessage]:
    """The relay's renderer for ``ENTRIES`` references: the events, in entry order."""
    tx_ids: list[int] = orjson.loads(row.value)
    return [entry_event(row.topic, e) for e in await LedgerStore(conn).feed_entries(tx_ids)]
