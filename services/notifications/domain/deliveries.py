"""One delivery of one points-ledger event to one subscription, and what an attempt at it came to.
Pure, no I/O: the sender (``services/notifications/sender.py``) makes the attempt, the store records it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery to attempt now."""

    delivery_id: int
    webhook_id: str
    event_id: str  # sent as webhook-id, the same on every attempt
    url: str
    body: str  # the CloudEvent JSON, exactly as signed
    attempts: int  # attempts made before this one
    created_at: datetime
    webhook_kind: str = "points.awarded"  # for the metrics


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: delivered (a 2xx within the timeout), or why not."""

    delivered: bool
    status: int | None  # the receiver's HTTP status, None when there was no answer
    error: str | None  # why it failed, in words an operator can act on (no secret, no body)
    seconds: float  # how long the attempt took
