"""HTTP entrypoint of the events service: thin, it parses, authorises and calls handlers."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import orjson
import structlog
from fastapi import FastAPI, Path, Request
from prometheus_client import Counter
from pydantic import BaseModel

from libs.activity.model import MAX_EVENT_BYTES, ActivityEvent, EventSchemas, Invalid, validate_event
from libs.activity.store import ActivityStore
from libs.platform.auth import Principal, Role
from libs.platform.db import Database
from libs.platform.errors import DomainError
from libs.platform.http import (
    Caller,
    PageCursor,
    PageLimit,
    decode_cursor,
    encode_cursor,
    problem_responses,
    require,
)
from libs.platform.settings import Settings
from services.events.handlers import Accepted, DeadLetterUnknown, ReusedEventId, accept_events, retry_dead_letter

SINGLE_TYPES = ("application/cloudevents+json", "application/json")
BATCH_TYPE = "application/cloudevents-batch+json"
EVENT_OBJECT = {"type": "object", "description": "a CloudEvent; see schemas/events/<type>.schema.json"}

log = structlog.get_logger(__name__)

# source: the token's sub (bounded by the tokens issued); type: a known type or "unknown".
EVENTS_RECEIVED = Counter(
    "warmbee_events_received_total",
    "Activity events received over HTTP, by outcome: accepted, duplicate, invalid (failed validation, "
    "another source's, or an id reused), refused (valid, but in a request refused for another event)",
    ["source", "type", "outcome"],
)


class AcceptedBody(BaseModel):
    accepted: int
    duplicates: int


class DeadLetter(BaseModel):
    dead_letter_id: int
    received_at: datetime
    reason: str
    topic: str | None  # null: accepted over HTTP, then found unscorable
    partition: int | None
    offset: int | None
    key: str | None
    source: str | None
    event_id: str | None
    payload: str
    payload_encoding: str


class RetriedBody(BaseModel):
    status: Literal["pending", "scored", "dead_lettered"]


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None


def register(app: FastAPI, settings: Settings, db: Database, schemas: EventSchemas) -> None:
    @app.post(
        "/v1/events",
        status_code=202,
        response_model=AcceptedBody,
        tags=["events"],
        summary="Publish one activity event or a batch (a source system)",
        responses=problem_responses(401, 403, 409, 413, 415, 422),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/cloudevents+json": {"schema": EVENT_OBJECT},
                    "application/json": {"schema": EVENT_OBJECT},
                    BATCH_TYPE: {
                        "schema": {
                            "type": "array",
                            "items": EVENT_OBJECT,
                            "maxItems": settings.max_batch_events,
                        }
                    },
                },
            }
        },
    )
    async def publish(request: Request, caller: Caller) -> AcceptedBody:
        require(caller, Role.SOURCE)
        body = await request.body()  # at most max_body_bytes: LimitBody (create_app) refuses more with 413
        documents = _documents(body, request.headers.get("content-type"), settings.max_batch_events)
        with structlog.contextvars.bound_contextvars(source=caller.sub):
            try:
                result = await _accept(documents, caller, may_hold_large_event=len(body) > MAX_EVENT_BYTES)
            except DomainError as problem:
                _count_refused(caller.sub, documents, problem, schemas)
                log.info("events.refused", status=problem.status, events=len(documents), detail=problem.detail)
                raise
            _count(caller.sub, ((e.type, "accepted") for e in result.new))
            _count(caller.sub, ((e.type, "duplicate") for e in result.duplicate))
            for e in (*result.new, *result.duplicate):
                log.debug("event.received", event_id=e.event_id, rider_id=e.rider_id, type=e.type)
            single = result.new or result.duplicate
            ids = {"event_id": single[0].event_id, "rider_id": single[0].rider_id} if len(documents) == 1 else {}
            log.info("events.accepted", accepted=result.accepted, duplicates=result.duplicates, **ids)
        return AcceptedBody(accepted=result.accepted, duplicates=result.duplicates)

    async def _accept(documents: list[object], caller: Principal, may_hold_large_event: bool) -> Accepted:
        slack = timedelta(seconds=settings.event_future_slack_s)
        events = _validated(documents, schemas, slack, may_hold_large_event)
        _check_sources(events, caller)
        try:
            return await db.run(lambda conn: accept_events(conn, events, settings.topic_activity_events))
        except ReusedEventId as exc:
            raise DomainError(
                "an event id was already used at this source for a different event; give each event its own id",
                kind="event-id-reused",
                errors=[
                    {
                        "index": events.index(e),
                        "id": e.event_id,
                        "reason": "id: already used by this source for a different event",
                    }
                    for e in exc.events
                ],
            ) from exc

    @app.get(
        "/v1/dead-letters",
        response_model=DeadLetterPage,
        tags=["events"],
        summary="Kafka events that failed validation, newest first (operator)",
        responses=problem_responses(401, 403, 422),
    )
    async def dead_letters(
        caller: Caller,
        limit: PageLimit = 50,
        cursor: PageCursor = None,
    ) -> DeadLetterPage:
        require(caller, Role.OPERATOR)
        async with db.read() as conn:
            rows = await ActivityStore(conn).dead_letters(limit, decode_cursor(cursor))
        next_cursor = encode_cursor(rows[-1]["dead_letter_id"]) if len(rows) == limit else None
        return DeadLetterPage(items=[DeadLetter(**r) for r in rows], next_cursor=next_cursor)

    @app.post(
        "/v1/dead-letters/{dead_letter_id}/retry",
        status_code=202,
        response_model=RetriedBody,
        tags=["events"],
        summary="Validate and score a dead letter again, e.g. once a fix is deployed (operator)",
        description="A payload that still fails stays a dead letter, with the new reason; an event that was "
        "scored meanwhile is not scored twice. `status` is the event's status now.",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def retry(caller: Caller, dead_letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> RetriedBody:
        require(caller, Role.OPERATOR)
        slack = timedelta(seconds=settings.event_future_slack_s)
        try:
            status = await db.run(
                lambda conn: retry_dead_letter(conn, dead_letter_id, schemas, slack, settings.topic_activity_events)
            )
        except DeadLetterUnknown as exc:
            raise DomainError(
                f"dead_letter_id: no dead letter {dead_letter_id}; see GET /v1/dead-letters",
                kind="not-found",
                title="Not found",
            ) from exc
        log.info("dead_letter.retried", dead_letter_id=dead_letter_id, status=status, operator=caller.sub)
        return RetriedBody(status=status)


def _count(source: str, outcomes: Iterable[tuple[str, str]]) -> None:
    for (event_type, outcome), n in Tally(outcomes).items():
        EVENTS_RECEIVED.labels(source, event_type, outcome).inc(n)


def _count_refused(source: str, documents: list[object], problem: DomainError, schemas: EventSchemas) -> None:
    """Each event of a refused request: ``invalid`` if the problem names it, else ``refused``."""
    faulty = {e.get("index") for e in problem.extra.get("errors", []) if isinstance(e, dict)}
    _count(
        source,
        ((_type_of(d, schemas), "invalid" if i in faulty else "refused") for i, d in enumerate(documents)),
    )


def _type_of(document: object, schemas: EventSchemas) -> str:
    """The event's type as a label value: one of the known types, or "unknown" (label values stay bounded)."""
    value = document.get("type") if isinstance(document, dict) else None
    return value if isinstance(value, str) and value in schemas.by_type else "unknown"


def _documents(body: bytes, content_type: str | None, max_batch: int) -> list[object]:
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in (*SINGLE_TYPES, BATCH_TYPE):
        raise DomainError(
            f"Content-Type: {media or 'missing'} is not accepted; send one event as "
            f"application/cloudevents+json or a batch as {BATCH_TYPE}",
            kind="unsupported-media-type",
            title="Unsupported content type",
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


def _validated(
    documents: list[object], schemas: EventSchemas, future_slack: timedelta, may_hold_large_event: bool
) -> list[ActivityEvent]:
    """Every event valid, or a 422 naming each that is not. An event over MAX_EVENT_BYTES as JSON is
    refused too (the relay publishes each event as one Kafka message): looked for only in a body larger
    than that, since no event of a smaller body can be."""
    now = datetime.now(UTC)
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


def _check_sources(events: list[ActivityEvent], caller: Principal) -> None:
    foreign = [(i, e) for i, e in enumerate(events) if e.source != caller.sub]
    if foreign:
        raise DomainError(
            f"source: must equal the token's sub {caller.sub!r}; publish each source's events with its own token",
            kind="source-mismatch",
            title="Source does not match the token",
            errors=[
                {"index": i, "id": e.event_id, "reason": f"source: {e.source!r} is not {caller.sub!r}"}
                for i, e in foreign
            ],
        )
