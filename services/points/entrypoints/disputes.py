"""HTTP entrypoint of disputes (申诉): a rider questions one of its entries, an operator resolves it once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from libs.i18n.language import Language
from libs.platform.auth import Principal, Role
from libs.platform.errors import DomainError
from libs.platform.fields import JsonInt, Words
from libs.platform.http import (
    AppSettings,
    Caller,
    Db,
    PageCursor,
    PageLimit,
    ReaderLanguage,
    decode_cursor,
    encode_cursor,
    problem_responses,
    require,
)
from services.points import disputes as cases
from services.points.domain.disputes import MAX_AMOUNT, MESSAGE_MAX, Outcome, Resolution, Status, public_fields
from services.points.entrypoints.api import EntryBody, IdempotencyKey

log = structlog.get_logger(__name__)

router = APIRouter(tags=["disputes"])

DisputeId = Annotated[str, Path(pattern=r"^dsp_[0-9a-f]{32}$", description="the dispute id (dsp_...)")]


class DisputeRequest(BaseModel):
    entry_id: JsonInt = Field(ge=1, le=2**63 - 1, description="the entry questioned: one of the rider's own")
    message: Words = Field(
        min_length=1, max_length=MESSAGE_MAX, description="what is wrong, in the rider's words (e.g. 我做了三个小时)"
    )


class ResolveRequest(BaseModel):
    outcome: Literal["upheld", "rejected"]
    amount: JsonInt | None = Field(
        None,
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        description="upheld: the points of the adjustment, signed, not 0; rejected: leave it out",
    )
    reply: Words = Field(min_length=1, max_length=MESSAGE_MAX, description="the answer the rider reads")


class DisputedEntryBody(EntryBody):
    event: dict[str, Any] | None = Field(None, description="operators: the event the entry scored (an award)")


class DisputeBody(BaseModel):
    dispute_id: str
    entry_id: int
    rider_id: str
    status: Literal["open", "resolved"]
    message: str
    created_at: datetime
    outcome: Literal["upheld", "rejected"] | None = None
    amount: int | None = None
    reply: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    adjustment_entry_id: int | None = Field(None, description="upheld: the adjustment's entry id")
    entry: DisputedEntryBody | None = None

    @classmethod
    def of(cls, view: cases.DisputeView, caller: Principal, language: Language) -> DisputeBody:
        found = view.entry
        entry = None
        if found is not None:
            event = found.event if caller.role is Role.OPERATOR else None
            entry = DisputedEntryBody(**EntryBody.of(found.entry, language).model_dump(), event=event)
        return cls(**public_fields(view.dispute), entry=entry)


class DisputePage(BaseModel):
    items: list[DisputeBody]
    next_cursor: str | None


def _key_required(idempotency_key: str | None, what: str) -> str:
    if not idempotency_key:
        raise DomainError(
            f"Idempotency-Key: send a unique key per {what}, and the same key when retrying",
            kind="idempotency-key-required",
        )
    return idempotency_key


@router.post(
    "/v1/disputes",
    status_code=201,
    response_model=DisputeBody,
    summary="Question one of your entries (rider); one open dispute per entry",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def open_dispute(
    body: DisputeRequest,
    response: Response,
    db: Db,
    settings: AppSettings,
    caller: Caller,
    language: ReaderLanguage,
    idempotency_key: IdempotencyKey = None,
) -> DisputeBody:
    require(caller, Role.RIDER)
    key = _key_required(idempotency_key, "dispute")
    opened = await cases.open_dispute(db, settings, caller.sub, key, body.entry_id, body.message)
    if opened.created:
        log.info("dispute.opened", dispute_id=opened.dispute.dispute_id, entry_id=body.entry_id, rider_id=caller.sub)
    else:
        response.status_code = 200
    return DisputeBody.of(cases.DisputeView(opened.dispute, None), caller, language)


@router.get(
    "/v1/disputes",
    response_model=DisputePage,
    summary="Disputes oldest first: a rider its own, an operator every rider's",
    responses=problem_responses(401, 403, 422),
)
async def list_disputes(
    db: Db,
    caller: Caller,
    language: ReaderLanguage,
    status: Annotated[Literal["open", "resolved"] | None, Query(description="only open, or only resolved")] = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> DisputePage:
    require(caller, Role.RIDER, Role.OPERATOR)
    rider = caller.sub if caller.role is Role.RIDER else None
    page = await cases.disputes(db, rider, Status(status) if status else None, decode_cursor(cursor), limit)
    next_cursor = encode_cursor(page[-1][0]) if len(page) == limit else None
    return DisputePage(items=[DisputeBody.of(view, caller, language) for _, view in page], next_cursor=next_cursor)


@router.get(
    "/v1/disputes/{dispute_id}",
    response_model=DisputeBody,
    summary="One dispute (its rider, or an operator)",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_dispute(dispute_id: DisputeId, db: Db, caller: Caller, language: ReaderLanguage) -> DisputeBody:
    require(caller, Role.RIDER, Role.OPERATOR)
    view = await cases.dispute(db, dispute_id)
    if view is None or (caller.role is Role.RIDER and view.dispute.rider_id != caller.sub):
        raise cases.unknown_dispute(dispute_id)
    return DisputeBody.of(view, caller, language)


@router.post(
    "/v1/disputes/{dispute_id}/resolve",
    response_model=DisputeBody,
    summary="Resolve a dispute once (operator): upheld with an adjustment, or rejected with a reply",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def resolve_dispute(
    dispute_id: DisputeId,
    body: ResolveRequest,
    db: Db,
    settings: AppSettings,
    caller: Caller,
    language: ReaderLanguage,
    idempotency_key: IdempotencyKey = None,
) -> DisputeBody:
    require(caller, Role.OPERATOR)
    key = _key_required(idempotency_key, "resolution")
    resolution = Resolution(Outcome(body.outcome), body.amount or None, body.reply)
    resolved = await cases.resolve_dispute(db, settings, caller.sub, key, dispute_id, resolution)
    log.info("dispute.resolved", dispute_id=dispute_id, outcome=body.outcome, amount=body.amount, operator=caller.sub)
    view = await cases.dispute(db, dispute_id)
    return DisputeBody.of(view or cases.DisputeView(resolved, None), caller, language)
