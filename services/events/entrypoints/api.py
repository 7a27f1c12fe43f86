"""HTTP entrypoint of the events service: thin, it reads the request, authorises, calls a use case and
records its metrics; the rules are in ``domain/intake.py``, the transactions in ``handlers.py``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, Field

from libs.activity.model import MAX_EVENT_BYTES, EventSchemas
from libs.activity.store import ActivityStore
from libs.platform.auth import Role
from libs.platform.errors import DomainError
from libs.platform.http import (
    AppSettings,
    Caller,
    Db,
    PageCursor,
    PageLimit,
    decode_cursor,
    encode_cursor,
    problem_responses,
    require,
)
from services.events import handlers, metrics
from services.events.domain import intake
from services.events.domain.intake import BATCH_TYPE

log = structlog.get_logger(__name__)
router = APIRouter(tags=["events"])


async def _schemas(request: Request) -> EventSchemas:  # async: no hop to the thread pool per request
    return request.app.state.schemas  # type: ignore[no-any-return]


# The event schemas, loaded once by the bootstrap into app.state.
Schemas = Annotated[EventSchemas, Depends(_schemas)]

EVENT_OBJECT = {"type": "object", "description": "a CloudEvent; see schemas/events/<type>.schema.json"}


# The body, one event or a batch, as the document shows it (the route reads the raw body itself).
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/cloudevents+json": {"schema": EVENT_OBJECT},
            "application/json": {"schema": EVENT_OBJECT},
            BATCH_TYPE: {"schema": {"type": "array", "items": EVENT_OBJECT}},
        },
    }
}


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
    retried_at: datetime | None = Field(default=None, description="when an operator retried it; null: waiting")


class RetriedBody(BaseModel):
    status: Literal["pending", "scored", "dead_lettered"]


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None


@router.post(
    "/v1/events",
    status_code=202,
    response_model=AcceptedBody,
    summary="Publish one activity event or a batch (a source system)",
    responses=problem_responses(401, 403, 409, 413, 415, 422),
    openapi_extra=REQUEST_BODY,  # and maxItems, from the app's settings: see document_batch_limit
)
async def publish(request: Request, caller: Caller, db: Db, settings: AppSettings, schemas: Schemas) -> AcceptedBody:
    require(caller, Role.SOURCE)
    body = await request.body()  # at most max_body_bytes: LimitBody (create_app) refuses more with 413
    headers = request.headers.raw  # as received: a header sent twice is seen twice
    documents = intake.documents(body, request.headers.get("content-type"), settings.max_batch_events, headers)
    # In binary mode the attributes come as headers: they count towards the event's size as JSON too.
    size = len(body) + sum(len(k) + len(v) for k, v in headers)
    command = handlers.Publish(documents, caller.sub, may_hold_large_event=size > MAX_EVENT_BYTES)
    with structlog.contextvars.bound_contextvars(source=caller.sub):
        try:
            result = await handlers.publish(
                db, command, schemas, timedelta(seconds=settings.event_future_slack_s), settings.topic_activity_events
            )
        except DomainError as problem:
            metrics.count_refused(caller.sub, documents, problem, schemas)
            log.info("events.refused", status=problem.status, events=len(documents), detail=problem.detail)
            raise
        metrics.count_accepted(caller.sub, result)
        for e in (*result.new, *result.duplicate):
            log.debug("event.received", event_id=e.event_id, rider_id=e.rider_id, type=e.type)
        single = result.new or result.duplicate
        ids = {"event_id": single[0].event_id, "rider_id": single[0].rider_id} if len(documents) == 1 else {}
        log.info("events.accepted", accepted=result.accepted, duplicates=result.duplicates, **ids)
    return AcceptedBody(accepted=result.accepted, duplicates=result.duplicates)


@router.get(
    "/v1/dead-letters",
    response_model=DeadLetterPage,
    summary="Kafka events that failed validation, newest first (operator)",
    responses=problem_responses(401, 403, 422),
)
async def dead_letters(
    caller: Caller,
    db: Db,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    waiting: Annotated[bool, Query(description="only those not retried yet (the console's count)")] = False,
) -> DeadLetterPage:
    require(caller, Role.OPERATOR)
    async with db.read() as conn:
        rows = await ActivityStore(conn).dead_letters(limit, decode_cursor(cursor), waiting)
    next_cursor = encode_cursor(rows[-1]["dead_letter_id"]) if len(rows) == limit else None
    return DeadLetterPage(items=[DeadLetter(**r) for r in rows], next_cursor=next_cursor)


@router.post(
    "/v1/dead-letters/{dead_letter_id}/retry",
    status_code=202,
    response_model=RetriedBody,
    summary="Validate and score a dead letter again, e.g. once a fix is deployed (operator)",
    description="A payload that still fails stays a dead letter, with the new reason; an event that was "
    "scored meanwhile is not scored twice. `status` is the event's status now.",
    responses=problem_responses(401, 403, 404, 422),
)
async def retry(
    caller: Caller,
    db: Db,
    settings: AppSettings,
    schemas: Schemas,
    dead_letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> RetriedBody:
    require(caller, Role.OPERATOR)
    slack = timedelta(seconds=settings.event_future_slack_s)
    status = await handlers.retry_dead_letter(db, dead_letter_id, schemas, slack, settings.topic_activity_events)
    log.info("dead_letter.retried", dead_letter_id=dead_letter_id, status=status, operator=caller.sub)
    return RetriedBody(status=status)


def document_batch_limit(app: FastAPI, max_batch_events: int) -> None:
    """Give this app's document of POST /v1/events its batch limit (maxItems), from its settings: the
    router is one for every app, so the limit is added to each app's document as it is built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schema["paths"]["/v1/events"]["post"]["requestBody"]["content"][BATCH_TYPE]["schema"]["maxItems"] = (
            max_batch_events
        )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
