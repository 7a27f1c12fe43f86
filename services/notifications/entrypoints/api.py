"""HTTP entrypoint of the notifications service: webhook subscriptions and their deliveries.
A module-level router: the bootstrap includes it; each route takes the database, the settings and the
caller, calls one query or use case, and raises the domain's errors as they come."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import structlog
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from libs.platform.auth import Principal, Role
from libs.platform.errors import DomainError
from libs.platform.fields import Text
from libs.platform.http import (
    AppSettings,
    Caller,
    Db,
    PageCursor,
    PageLimit,
    decode_cursor,
    encode_cursor,
    problem_responses,
)
from services.notifications.addresses import policy_of, refusal
from services.notifications.domain.kinds import KINDS
from services.notifications.domain.subscriptions import MAX_URL_CHARS, allowed_kinds, new_secret, new_webhook_id
from services.notifications.queries import Delivery, NotificationQueries
from services.notifications.sealing import Sealer
from services.notifications.store import DeliveryStore, Subscription, SubscriptionStore

log = structlog.get_logger(__name__)
router = APIRouter()

Kind = Literal[
    "points.awarded",
    "points.adjusted",
    "points.lapsed",
    "redemption.held",
    "redemption.confirmed",
    "redemption.cancelled",
    "redemption.expired",
    "event.dead_lettered",
    "dispute.opened",
    "dispute.resolved",
]
assert set(Kind.__args__) == set(KINDS)  # type: ignore[attr-defined]
WebhookId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{24}$", description="the webhook_id POST /v1/webhooks gave")]


class WebhookRequest(BaseModel):
    url: Text = Field(min_length=1, max_length=MAX_URL_CHARS, description="https://... (http:// in local runs)")
    kinds: list[Kind] = Field(min_length=1, max_length=len(KINDS))
    description: Text = Field(default="", max_length=500)


class WebhookBody(BaseModel):
    webhook_id: str
    url: str
    kinds: list[str]
    description: str
    owner_role: str
    owner_id: str
    created_at: datetime

    @classmethod
    def of(cls, s: Subscription) -> WebhookBody:
        return cls(
            webhook_id=s.webhook_id,
            url=s.url,
            kinds=list(s.kinds),
            description=s.description,
            owner_role=s.owner_role.value,
            owner_id=s.owner_id,
            created_at=s.created_at,
        )


class CreatedWebhook(WebhookBody):
    secret: str = Field(description="the signing secret (Standard Webhooks, whsec_...): shown this once only")


class WebhookPage(BaseModel):
    items: list[WebhookBody]
    next_cursor: str | None


class DeliveryBody(BaseModel):
    delivery_id: int
    event_id: str = Field(description="the CloudEvent id, sent as webhook-id on every attempt")
    kind: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryBody:
        return cls(**{name: getattr(d, name) for name in cls.model_fields})


class DeliveryPage(BaseModel):
    items: list[DeliveryBody]
    next_cursor: str | None


class RetryBody(BaseModel):
    status: Literal["pending"]


@router.post(
    "/v1/webhooks",
    status_code=201,
    response_model=CreatedWebhook,
    tags=["webhooks"],
    summary="Subscribe a URL to kinds of events (operator: any; partner: its redemptions; source: its events)",
    responses=problem_responses(401, 403, 422),
)
async def create_webhook(body: WebhookRequest, db: Db, settings: AppSettings, caller: Caller) -> CreatedWebhook:
    kinds = allowed_kinds(caller.role, body.kinds)
    problem = await refusal(body.url, policy_of(settings))
    if problem is not None:
        raise DomainError(f"url: {problem}", kind="webhook-url-refused")
    secret = new_secret()
    sealed = Sealer.of(settings).seal(secret)
    made = await db.run(
        lambda conn: SubscriptionStore(conn).create(
            new_webhook_id(), caller.role, caller.sub, body.url, kinds, body.description, sealed
        )
    )
    log.info("webhook.created", webhook_id=made.webhook_id, owner=caller.sub, role=caller.role.value, kinds=kinds)
    return CreatedWebhook(**WebhookBody.of(made).model_dump(), secret=secret)


@router.get(
    "/v1/webhooks",
    response_model=WebhookPage,
    tags=["webhooks"],
    summary="Webhook subscriptions (one's own; every one for an operator)",
    responses=problem_responses(401, 422),
)
async def list_webhooks(db: Db, caller: Caller, limit: PageLimit = 100, cursor: PageCursor = None) -> WebhookPage:
    offset = decode_cursor(cursor) or 0
    async with db.read() as conn:
        rows = await NotificationQueries(conn).subscriptions(caller.role, caller.sub, limit, offset)
    next_cursor = encode_cursor(offset + limit) if len(rows) == limit else None
    return WebhookPage(items=[WebhookBody.of(s) for s in rows], next_cursor=next_cursor)


@router.delete(
    "/v1/webhooks/{webhook_id}",
    status_code=204,
    tags=["webhooks"],
    summary="Stop a subscription (its deliveries stay readable)",
    responses=problem_responses(401, 404),
)
async def delete_webhook(webhook_id: WebhookId, db: Db, caller: Caller) -> Response:
    async def work(conn: asyncpg.Connection) -> None:
        await _own(conn, caller, webhook_id)
        await SubscriptionStore(conn).delete(webhook_id)

    await db.run(work)
    return Response(status_code=204)


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    tags=["webhooks"],
    summary="A subscription's deliveries, newest first",
    responses=problem_responses(401, 404, 422),
)
async def list_deliveries(
    webhook_id: WebhookId,
    db: Db,
    caller: Caller,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> DeliveryPage:
    async with db.read() as conn:
        await _own(conn, caller, webhook_id)
        rows = await NotificationQueries(conn).deliveries(webhook_id, status, limit, decode_cursor(cursor))
    next_cursor = encode_cursor(rows[-1].delivery_id) if len(rows) == limit else None
    return DeliveryPage(items=[DeliveryBody.of(d) for d in rows], next_cursor=next_cursor)


@router.post(
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=RetryBody,
    tags=["webhooks"],
    summary="Send a delivery again now (a failed one waits for this)",
    responses=problem_responses(401, 404, 409),
)
async def retry_delivery(
    webhook_id: WebhookId, delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], db: Db, caller: Caller
) -> RetryBody:
    async def work(conn: asyncpg.Connection) -> str | None:
        await _own(conn, caller, webhook_id)
        return await DeliveryStore(conn).retry(webhook_id, delivery_id)

    was = await db.run(work)
    if was is None:
        raise DomainError(f"no delivery {delivery_id} of webhook {webhook_id}", kind="delivery-unknown")
    if was == "delivered":
        raise DomainError(f"delivery {delivery_id} was delivered; it is not sent again", kind="already-delivered")
    return RetryBody(status="pending")


async def _own(conn: asyncpg.Connection, caller: Principal, webhook_id: str) -> Subscription:
    """The subscription, if the caller may manage it (its owner, or an operator); else unknown to it."""
    found = await NotificationQueries(conn).subscription(webhook_id)
    mine = found is not None and (
        caller.role is Role.OPERATOR or (found.owner_role is caller.role and found.owner_id == caller.sub)
    )
    if found is None or not mine:
        raise DomainError(f"no webhook {webhook_id} of yours", kind="webhook-unknown")
    return found
