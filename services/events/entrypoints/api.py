"""HTTP entrypoint of the events service: thin, it parses, authorises and calls handlers."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import orjson
import structlog
from fastapi import FastAPI, Request
from prometheus_client import Counter
from pydantic import BaseModel

from libs.activity.model import ActivityEvent, EventSchemas, Invalid, validate_event
from libs.activity.store import ActivityStore
from libs.platform.auth import Principal, Role
from libs.platform.db import Database
from libs.platform.http import (
    Caller,
    PageCursor,
    PageLimit,
    Problem,
    decode_cursor,
    encode_cursor,
    problem_responses,
    require,
)
from libs.platform.settings import Settings
from services.events.handlers import Accepted, ReusedEventId, accept_events

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
    topic: str
    partition: int
    offset: int
    key: str | None
    source: str | None
    event_id: str | None
    payload: str
    payload_encoding: str


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
        documents = _documents(
            await request.body(),  # at most max_body_bytes: LimitBody (create_app) refuses more with 413
            request.headers.get("content-type"),
            settings.max_batch_events,
        )
        with structlog.contextvars.bound_contextvars(source=caller.sub):
            try:
                result = await _accept(documents, caller)
            except Problem as problem:
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

    async def _accept(documents: list[object], caller: Principal) -> Accepted:
        events = _validated(documents, schemas, timedelta(seconds=settings.event_future_slack_s))
        _check_sources(events, caller)
        try:
            return await db.run(lambda conn: accept_events(conn, events, settings.topic_activity_events))
        except ReusedEventId as exc:
            raise Problem(
                409,
                "event-id-reused",
                "Event id reused",
                "an event id was already used at this source for a different event; give each event its own id",
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


def _count(source: str, outcomes: Iterable[tuple[str, str]]) -> None:
    for (event_type, outcome), n in Tally(outcomes).items():
        EVENTS_RECEIVED.labels(source, event_type, outcome).inc(n)


def _count_refused(source: str, documents: list[object], problem: Problem, schemas: EventSchemas) -> None:
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
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"Content-Type: {media or 'missing'} is not accepted; send one event as "
            f"application/cloudevents+json or a batch as {BATCH_TYPE}",
        )
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(422, "malformed-json", "Malformed JSON", f"body: is not valid JSON ({exc})") from exc
    if media == BATCH_TYPE:
        if not isinstance(decoded, list):
            raise Problem(422, "invalid-batch", "Invalid batch", "body: a batch must be a JSON array of events")
        if not 1 <= len(decoded) <= max_batch:
            raise Problem(
                422,
                "invalid-batch",
                "Invalid batch",
                f"body: a batch holds 1 to {max_batch} events, got {len(decoded)}; split it",
            )
        return decoded
    if isinstance(decoded, list):
        raise Problem(
            422,
            "invalid-event",
            "Invalid event",
            f"body: a JSON array needs Content-Type {BATCH_TYPE}; one event is a JSON object",
        )
    return [decoded]


def _validated(documents: list[object], schemas: EventSchemas, future_slack: timedelta) -> list[ActivityEvent]:
    now = datetime.now(UTC)
    results = [validate_event(d, schemas, now, future_slack) for d in documents]
    errors = [
        {"index": i, "id": r.event_id, "reason": r.reason} for i, r in enumerate(results) if isinstance(r, Invalid)
    ]
    if errors:
        detail = "; ".join(f"event {e['index']}: {e['reason']}" for e in errors[:10])
        raise Problem(422, "invalid-event", "Invalid event", f"nothing was accepted: {detail}", errors=errors)
    return [r for r in results if isinstance(r, ActivityEvent)]


def _check_sources(events: list[ActivityEvent], caller: Principal) -> None:
    foreign = [(i, e) for i, e in enumerate(events) if e.source != caller.sub]
    if foreign:
        raise Problem(
            403,
            "source-mismatch",
            "Source does not match the token",
            f"source: must equal the token's sub {caller.sub!r}; publish each source's events with its own token",
            errors=[
                {"index": i, "id": e.event_id, "reason": f"source: {e.source!r} is not {caller.sub!r}"}
                for i, e in foreign
            ],
        )
