"""Use cases of the events service. Each runs in one transaction: the inbox rows and their outbox
rows commit together, so an accepted event is always relayed, even if the broker is down now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from libs.activity.model import ActivityEvent
from libs.activity.store import ActivityStore
from libs.platform.db import Connection
from libs.platform.outbox_store import OutboxMessage, OutboxStore


@dataclass(frozen=True, slots=True)
class Accepted:
    accepted: int
    duplicates: int
    new: tuple[ActivityEvent, ...] = field(default=(), compare=False)  # which they were, for metrics and logs
    duplicate: tuple[ActivityEvent, ...] = field(default=(), compare=False)


class ReusedEventId(Exception):
    """A source sent a different event under an id it had used before."""

    def __init__(self, events: Sequence[ActivityEvent]) -> None:
        super().__init__("event id reused for a different event")
        self.events = list(events)


def relay_message(event: ActivityEvent, topic: str) -> OutboxMessage:
    return OutboxMessage(
        topic=topic,
        key=event.rider_id.encode(),
        value=orjson.dumps(event.document),
        headers=(("warmbee-received-via", "http"),),
    )


async def accept_events(conn: Connection, events: Sequence[ActivityEvent], topic: str) -> Accepted:
    recorded = await ActivityStore(conn).record(events, via="http")
    if recorded.conflicts:
        raise ReusedEventId(recorded.conflicts)
    await OutboxStore(conn).add([relay_message(e, topic) for e in recorded.new])
    return Accepted(len(recorded.new), len(recorded.duplicates), tuple(recorded.new), tuple(recorded.duplicates))
