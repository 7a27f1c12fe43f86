"""HTTP entrypoint of disputes (申诉): a rider questions one of its entries, an operator resolves it once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from libs.i18n.language import Language
from libs.platform.auth import Principal, Role
from libs.platform.fields import JsonInt, Words
from libs.platform.http import (
    AppSettings,
    Caller,
    Db,
    IdempotencyKey,
    PageCursor,
    PageLimit,
    ReaderLanguage,
    decode_cursor,
    encode_cursor,
    key_required,
    problem_responses,
    require,
)
from services.points import disputes as cases
from services.points.domain.disputes import MAX_AMOUNT, MESSAGE_MAX, Outcome, Resolution, Status, public_fields
from services.points.entrypoints.api import EntryBody

log = structlog.get_logger(__name__)

router = APIRouter(tags=["disputes"])

DisputeId = Annotated[str, Path(pattern=r"^dsp_[0-9a-f]{32}$", description="the dispute id (dsp_...)")]


class DisputeRequest(BaseModel):
    # At most 2**53 - 1: a JSON number beyond it is not exact in every client (nor in the document's bound).
    entry_id: JsonInt = Field(ge=1, le=2**53 - 1, description="the entry questioned: one of the rider's own")
    message: Words = Field(
        min_length=1, max_length=MESSAGE_MAX, description="what is wrong, in the rider's words (e.g. 我做了三个小时)"
    )


class Upheld(BaseModel):
    outcome: Literal["upheld"]
    amount: JsonInt = Field(
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        description="the points of the adjustment, signed, not 0",
        json_schema_extra={"not": {"const": 0}},
    )
    reply: Words = Field(min_length=1, max_length=MESSAGE_MAX, description="the answer the rider reads")


class Rejected(BaseModel):
    outcome: Literal["rejected"]
    amount: None = Field(None, description="a rejected dispute moves no points: leave it out")
    reply: Words = Field(min_length=1, max_length=MESSAGE_MAX, description="the answer the rider reads")


ResolveRequest = Annotated[Upheld | Rejected, Field(discriminator="outcome")]


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
    key = key_required(idempotency_key, "dispute")
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
    key = key_required(idempotency_key, "resolution")
    resolution = Resolution(Outcome(body.outcome), body.amount, body.reply)
    resolved = await cases.resolve_dispute(db, settings, caller.sub, key, dispute_id, resolution)
    log.info("dispute.resolved", dispute_id=dispute_id, outcome=body.outcome, amount=body.amount, operator=caller.sub)
    view = await cases.dispute(db, dispute_id)
    return DisputeBody.of(view or cases.DisputeView(resolved, None), caller, language)
