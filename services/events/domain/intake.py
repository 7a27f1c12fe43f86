"""What a source may send: one event or a batch, each valid, none too large, all its own.

Pure: it reads a body and its media type, validates the events and checks their source; it knows nothing
of HTTP statuses or the database. Every refusal is a ``DomainError`` naming what to fix, and refuses the
whole request: nothing of it is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import orjson

from libs.activity import binary
from libs.activity.model import MAX_EVENT_BYTES, ActivityEvent, EventSchemas, Invalid, validate_event
from libs.i18n.problems import P_
from libs.platform.errors import DomainError

SINGLE_TYPES = ("application/cloudevents+json", "application/json")
BATCH_TYPE = "application/cloudevents-batch+json"
REUSED_ID = "already used by this source for a different event; give each event its own id"


class ReusedEventId(DomainError):
    """A source sent a different event under an id it had used before; ``errors`` names each."""

    kind = "event-id-reused"

    def __init__(self, conflicts: Sequence[ActivityEvent], batch: Sequence[ActivityEvent]) -> None:
        super().__init__(
            "an event id was already used at this source for a different event; give each event its own id",
            errors=[
                {
                    "index": batch.index(e),
                    "id": e.event_id,
                    "reason": "id: already used by this source for a different event",
                }
                for e in conflicts
            ],
        )
        self.events = list(conflicts)


class DeadLetterUnknown(DomainError):
    """No dead letter has that id."""

    kind = "not-found"  # what it has always answered; clients branch on the kind

    def __init__(self, dead_letter_id: int) -> None:
        super().__init__(
            f"dead_letter_id: no dead letter {dead_letter_id}; see GET /v1/dead-letters", title=P_("Not found")
        )
        self.dead_letter_id = dead_letter_id


def documents(body: bytes, content_type: str | None, max_batch: int, headers: binary.Headers = ()) -> list[object]:
    """The documents of a body: one event (a JSON object) or a batch (a JSON array of 1 to max_batch), or
    one event in binary mode (``ce-*`` headers, its data as the body)."""
    media = (content_type or "").split(";")[0].strip().lower()
    found = binary.attributes(headers, binary.HTTP)
    if found is not None:
        return [_binary_document(found, body, content_type, media)]
    if media not in (*SINGLE_TYPES, BATCH_TYPE):
        raise DomainError(
            f"Content-Type: {media or 'missing'} is not accepted; send one event as "
            f"application/cloudevents+json or a batch as {BATCH_TYPE}",
            kind="unsupported-media-type",
            title=P_("Unsupported content type"),
        )
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DomainError(f"body: is not valid JSON ({exc})", kind="malformed-json") from exc
    if media == BATCH_TYPE:
        if not isinstance(decoded, list):
            raise DomainError("body: a batch must be a JSON array of events", kind="invalid-batch")
        if not 1 <= len(decoded) <= max_batch:
            raise DomainError(
                f"body: a batch holds 1 to {max_batch} events, got {len(decoded)}; split it", kind="invalid-batch"
            )
        return decoded
    if isinstance(decoded, list):
        raise DomainError(
            f"body: a JSON array needs Content-Type {BATCH_TYPE}; one event is a JSON object", kind="invalid-event"
        )
    return [decoded]


def _binary_document(found: dict[str, str] | Invalid, body: bytes, content_type: str | None, media: str) -> object:
    """One event in binary mode. There is no binary batch (CloudEvents has none), and ``ce-*`` headers
    beside a structured body are two events in one request: both are refused, not guessed at."""
    if not isinstance(found, Invalid) and media in (SINGLE_TYPES[0], BATCH_TYPE):
        found = Invalid(
            f"Content-Type: {media} with ce-* headers mixes the two modes; send binary mode's data as "
            f"{binary.JSON_MEDIA}, or a structured event (or a batch) without ce-* headers"
        )
    decoded = found if isinstance(found, Invalid) else binary.document(found, body, content_type, binary.HTTP)
    if isinstance(decoded, Invalid):
        error = {"index": 0, "id": decoded.event_id, "reason": decoded.reason}
        raise DomainError(f"nothing was accepted: event 0: {decoded.reason}", kind="invalid-event", errors=[error])
    return decoded


def admit(
    documents: Sequence[object],
    source: str,
    schemas: EventSchemas,
    now: datetime,
    future_slack: timedelta,
    may_hold_large_event: bool,
) -> list[ActivityEvent]:
    """The events of ``documents``, each valid and of ``source`` (the token's sub), or the refusal."""
    events = validated(documents, schemas, now, future_slack, may_hold_large_event)
    check_sources(events, source)
    return events


def validated(
    documents: Sequence[object],
    schemas: EventSchemas,
    now: datetime,
    future_slack: timedelta,
    may_hold_large_event: bool,
) -> list[ActivityEvent]:
    """Every event valid, or an ``invalid-event`` naming each that is not. An event over MAX_EVENT_BYTES as
    JSON is refused too (the relay publishes each event as one Kafka message): looked for only in a body
    larger than that, since no event of a smaller body can be."""
    results = [validate_event(d, schemas, now, future_slack) for d in documents]
    if may_hold_large_event:
        results = [_sized(r) for r in results]
    errors = [
        {"index": i, "id": r.event_id, "reason": r.reason} for i, r in enumerate(results) if isinstance(r, Invalid)
    ]
    if errors:
        detail = "; ".join(f"event {e['index']}: {e['reason']}" for e in errors[:10])
        raise DomainError(f"nothing was accepted: {detail}", kind="invalid-event", errors=errors)
    return [r for r in results if isinstance(r, ActivityEvent)]


def _sized(result: ActivityEvent | Invalid) -> ActivityEvent | Invalid:
    if isinstance(result, Invalid):
        return result
    size = len(orjson.dumps(result.document))
    if size <= MAX_EVENT_BYTES:
        return result
    reason = f"event: is {size} bytes as JSON; an event may be at most {MAX_EVENT_BYTES} bytes"
    return Invalid(reason, result.source, result.event_id)


def check_sources(events: Sequence[ActivityEvent], source: str) -> None:
    """A source may only publish its own events: each event's ``source`` is the token's sub."""
    foreign = [(i, e) for i, e in enumerate(events) if e.source != source]
    if foreign:
        raise DomainError(
            f"source: must equal the token's sub {source!r}; publish each source's events with its own token",
            kind="source-mismatch",
            title=P_("Source does not match the token"),
            errors=[
                {"index": i, "id": e.event_id, "reason": f"source: {e.source!r} is not {source!r}"} for i, e in foreign
            ],
        )
