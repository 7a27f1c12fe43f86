"""What became of each event a client published."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # new: the service will score it exactly once
    DUPLICATE = "duplicate"  # the service held this (source, id) already: nothing changed
    # A batch the service answered with both counts: it says how many of each, not which event is which.
    ACCEPTED_OR_DUPLICATE = "accepted_or_duplicate"
    REFUSED = "refused"  # not accepted; ``reason`` says why; it stays with the sender
    # Not known to have arrived (the retries or the retry budget ran out): safe to send again, same ids.
    FAILED = "failed"
    DELIVERED = "delivered"  # Kafka: the broker has it; the worker validates it (a failure is a dead letter)


@dataclass(frozen=True, slots=True)
class EventResult:
    index: int  # the event's position in what was given to publish
    event_id: str | None
    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One publish call: every event's result, and the service's own counts (exact even for a mixed batch)."""

    events: tuple[EventResult, ...]
    accepted: int
    duplicates: int
    retries: int = 0

    @property
    def refused(self) -> tuple[EventResult, ...]:
        return tuple(e for e in self.events if e.outcome is Outcome.REFUSED)
