"""HTTP entrypoint of the redemption service: catalogue, redemptions, partner counter, settlement.

Each route parses, checks the caller's role and calls one use case (handlers.py) or one read
(queries.py); refusals are domain errors, rendered by libs/platform/http.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from libs.i18n.problems import P_
from libs.ledger.model import RIDER_ID_PATTERN
from libs.platform.auth import Principal, Role
from libs.platform.errors import DomainError
from libs.platform.fields import NUMBER_ONLY, DateTime, JsonBool, JsonInt, Text
from libs.platform.http import (
    AppSettings,
    Caller,
    Db,
    IdempotencyKey,
    PageCursor,
    PageLimit,
    decode_cursor,
    encode_cursor,
    key_required,
    problem_responses,
    require,
)
from services.redemption.domain.catalogue import Partner, Reward
from services.redemption.domain.errors import PartnerRequired, RedemptionUnknown
from services.redemption.domain.holds import Redemption, Status, code_of, month_of, qr_payload
from services.redemption.domain.settlement import month_bounds, settlement_of
from services.redemption.handlers import add_partner, cancel, confirm, look_up, put_reward, reserve
from services.redemption.queries import RedemptionQueries

ID = r"^[A-Za-z0-9_.\-]{1,64}$"
RIDER_ID = r"^[A-Za-z0-9_.:\-]{1,64}$"
MONTH = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
StatusFilter = Literal["held", "confirmed", "cancelled", "expired"]

router = APIRouter()


class PartnerBody(BaseModel):
    partner_id: Text = Field(pattern=ID)
    name: Text = Field(min_length=1, max_length=200)
    kind: Literal["merchant", "hospital", "barber"]


class RewardBody(BaseModel):
    reward_id: Text = Field(pattern=ID)
    partner_id: Text = Field(pattern=ID)
    title: Text = Field(min_length=1, max_length=200)
    cost: JsonInt = Field(gt=0, le=1_000_000)
    stock_per_month: Annotated[int, Field(ge=0, le=1_000_000), NUMBER_ONLY] | None = None
    per_rider_monthly_limit: Annotated[int, Field(gt=0, le=1000), NUMBER_ONLY] | None = None
    active: JsonBool = True

    def reward(self) -> Reward:
        return Reward(**self.model_dump())


class CatalogueItem(BaseModel):
    reward_id: str
    partner_id: str
    partner_name: str
    kind: str
    title: str
    cost: int
    stock_per_month: int | None
    stock_left: int | None
    per_rider_monthly_limit: int | None
    active: bool = True


class Catalogue(BaseModel):
    items: list[CatalogueItem]
    next_cursor: str | None = None


class PartnerListItem(BaseModel):
    partner_id: str
    name: str
    kind: str
    created_at: datetime
    rewards: int = Field(description="rewards of this partner, active or not")
    active_rewards: int


class PartnerList(BaseModel):
    items: list[PartnerListItem]
    next_cursor: str | None = None


class ReserveRequest(BaseModel):
    reward_id: Text = Field(pattern=ID)
    expected_cost: Annotated[int, Field(gt=0), NUMBER_ONLY] | None = Field(
        default=None, description="the cost the rider saw; a change is reported"
    )


class RedemptionBody(BaseModel):
    redemption_id: str
    reward_id: str
    rider_id: str
    partner_id: str
    title: str
    cost: int
    status: str
    code: str | None = Field(description="shown to its rider (and operators) while held")
    qr_payload: str | None = None
    expires_at: datetime
    created_at: datetime
    resolved_at: datetime | None = None
    notice: str | None = None

    @classmethod
    def of(cls, r: Redemption, show_code: bool) -> RedemptionBody:
        live = show_code and r.status is Status.HELD
        return cls(
            redemption_id=r.redemption_id,
            reward_id=r.reward_id,
            rider_id=r.rider_id,
            partner_id=r.partner_id,
            title=r.title,
            cost=r.cost,
            status=r.status.value,
            code=r.code if live else None,
            qr_payload=qr_payload(r.code) if live else None,
            expires_at=r.expires_at,
            created_at=r.created_at,
            resolved_at=r.resolved_at,
            notice=r.notice,
        )


class RedemptionPage(BaseModel):
    items: list[RedemptionBody]
    next_cursor: str | None


class ConfirmRequest(BaseModel):
    code: Text = Field(min_length=1, max_length=64, description="the 8-character code, or the QR payload")


class SettlementItem(BaseModel):
    redemption_id: str
    reward_id: str
    title: str
    points: int
    confirmed_at: datetime


class Settlement(BaseModel):
    partner_id: str
    month: str
    redemptions: int
    points_total: int
    items: list[SettlementItem]


def _may_see(caller: Principal, r: Redemption) -> bool:
    return (
        caller.role is Role.OPERATOR
        or (caller.role is Role.RIDER and caller.sub == r.rider_id)
        or (caller.role is Role.PARTNER and caller.sub == r.partner_id)
    )


def _created_before(cursor: str | None) -> datetime | None:
    """The creation time a page's cursor stands for (microseconds since the epoch, as written below)."""
    before = decode_cursor(cursor)
    if before is None:
        return None
    try:
        return datetime.fromtimestamp(before / 1_000_000, UTC)
    except (OverflowError, ValueError, OSError):  # past year 9999, which Python cannot hold: all of them
        return datetime.max.replace(tzinfo=UTC)


def _status(value: StatusFilter | None) -> Status | None:
    return Status(value) if value is not None else None


def _page(rows: list[Redemption], limit: int, show_code: bool) -> RedemptionPage:
    next_cursor = encode_cursor(int(rows[-1].created_at.timestamp() * 1_000_000)) if len(rows) == limit else None
    return RedemptionPage(items=[RedemptionBody.of(r, show_code=show_code) for r in rows], next_cursor=next_cursor)


@router.post(
    "/v1/partners",
    status_code=201,
    response_model=PartnerBody,
    tags=["catalogue"],
    summary="Add a partner (operator)",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_partner(body: PartnerBody, db: Db, caller: Caller) -> PartnerBody:
    require(caller, Role.OPERATOR)
    partner, _ = await add_partner(db, Partner(body.partner_id, body.name, body.kind))
    return PartnerBody(partner_id=partner.partner_id, name=partner.name, kind=partner.kind)


@router.post(
    "/v1/rewards",
    status_code=201,
    response_model=RewardBody,
    tags=["catalogue"],
    summary="Add a reward (operator)",
    responses=problem_responses(401, 403, 409, 422),
)
async def create_reward(body: RewardBody, db: Db, caller: Caller) -> RewardBody:
    require(caller, Role.OPERATOR)
    await put_reward(db, body.reward(), create=True)
    return body


@router.put(
    "/v1/rewards/{reward_id}",
    response_model=RewardBody,
    tags=["catalogue"],
    summary="Replace a reward (operator; the whole body again)",
    responses=problem_responses(401, 403, 404, 422),
)
async def update_reward(
    reward_id: Annotated[str, Path(pattern=ID)], body: RewardBody, db: Db, caller: Caller
) -> RewardBody:
    require(caller, Role.OPERATOR)
    if body.reward_id != reward_id:
        raise DomainError(
            "reward_id: must equal the reward_id of the path", kind="invalid-request", title=P_("Invalid reward")
        )
    await put_reward(db, body.reward(), create=False)
    return body


@router.get(
    "/v1/rewards",
    response_model=Catalogue,
    tags=["catalogue"],
    summary="The active catalogue, with this month's stock left (operators: the inactive rewards too)",
    responses=problem_responses(401, 403, 422),
)
async def catalogue(
    db: Db,
    caller: Caller,
    include_inactive: Annotated[
        bool, Query(description="operators only: the inactive rewards too (each says `active`)")
    ] = False,
) -> Catalogue:
    if include_inactive:
        require(caller, Role.OPERATOR)
    async with db.read() as conn:
        rows = await RedemptionQueries(conn).catalogue(month_of(datetime.now(UTC)), include_inactive)
    return Catalogue(items=[CatalogueItem(**r) for r in rows])


@router.get(
    "/v1/partners",
    response_model=PartnerList,
    tags=["catalogue"],
    summary="Every partner, with its rewards counted (operator)",
    responses=problem_responses(401, 403),
)
async def partners(db: Db, caller: Caller) -> PartnerList:
    require(caller, Role.OPERATOR)
    async with db.read() as conn:
        rows = await RedemptionQueries(conn).partners()
    return PartnerList(items=[PartnerListItem(**r) for r in rows])


@router.post(
    "/v1/redemptions",
    status_code=201,
    response_model=RedemptionBody,
    tags=["redemptions"],
    summary="Reserve a reward: hold its cost and get a code (rider)",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def create_redemption(
    body: ReserveRequest,
    db: Db,
    settings: AppSettings,
    caller: Caller,
    idempotency_key: IdempotencyKey = None,
) -> RedemptionBody:
    require(caller, Role.RIDER)
    idempotency_key = key_required(idempotency_key, "redemption")
    reserved = await reserve(db, settings, caller.sub, body.reward_id, idempotency_key, body.expected_cost)
    return RedemptionBody.of(reserved.redemption, show_code=True)


@router.get(
    "/v1/redemptions",
    response_model=RedemptionPage,
    tags=["redemptions"],
    summary="The rider's own redemptions, newest first, with the code of each live hold (rider; an operator "
    "names the rider with rider_id)",
    responses=problem_responses(401, 403, 422),
)
async def rider_redemptions(
    db: Db,
    caller: Caller,
    status: StatusFilter | None = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
    rider_id: Annotated[
        str | None,
        Query(pattern=RIDER_ID_PATTERN.pattern, description="operators: whose redemptions (the console's rider tab)"),
    ] = None,
) -> RedemptionPage:
    rider = _whose_redemptions(caller, rider_id)
    before_at = _created_before(cursor)
    async with db.read() as conn:
        rows = await RedemptionQueries(conn).of_rider(rider, _status(status), limit, before_at)
    return _page(rows, limit, show_code=True)


def _whose_redemptions(caller: Principal, rider_id: str | None) -> str:
    """A rider reads its own; an operator must say whose (a rider naming itself is fine)."""
    if caller.role is Role.OPERATOR and rider_id is not None:
        return rider_id
    require(caller, Role.RIDER)
    if rider_id is not None and rider_id != caller.sub:
        raise DomainError(P_("rider_id: a rider reads only its own redemptions; leave rider_id out"), kind="forbidden")
    return caller.sub


@router.get(
    "/v1/redemptions/{redemption_id}",
    response_model=RedemptionBody,
    tags=["redemptions"],
    summary="A redemption (its rider, its partner, operator)",
    responses=problem_responses(401, 404),
)
async def get_redemption(redemption_id: Annotated[Text, Path(max_length=64)], db: Db, caller: Caller) -> RedemptionBody:
    async with db.read() as conn:
        r = await RedemptionQueries(conn).redemption(redemption_id)
    if r is None or not _may_see(caller, r):
        raise RedemptionUnknown(redemption_id)
    return RedemptionBody.of(r, show_code=caller.role is not Role.PARTNER)


@router.post(
    "/v1/redemptions/{redemption_id}/cancel",
    response_model=RedemptionBody,
    tags=["redemptions"],
    summary="Cancel a hold: its points come back (its rider, operator)",
    responses=problem_responses(401, 403, 404, 409),
)
async def cancel_redemption(
    redemption_id: Annotated[Text, Path(max_length=64)], db: Db, settings: AppSettings, caller: Caller
) -> RedemptionBody:
    require(caller, Role.RIDER, Role.OPERATOR)
    rider = caller.sub if caller.role is Role.RIDER else None
    r = await cancel(db, settings, redemption_id, caller.sub, rider)
    return RedemptionBody.of(r, show_code=False)


@router.post(
    "/v1/partner/confirmations",
    response_model=RedemptionBody,
    tags=["partners"],
    summary="Confirm a rider's code at the counter (partner)",
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def confirm_code(body: ConfirmRequest, db: Db, settings: AppSettings, caller: Caller) -> RedemptionBody:
    require(caller, Role.PARTNER)
    r = await confirm(db, settings, caller.sub, code_of(body.code))
    return RedemptionBody.of(r, show_code=False)


@router.get(
    "/v1/partner/codes/{code}",
    response_model=RedemptionBody,
    tags=["partners"],
    summary="What a rider's code stands for, before confirming it (partner)",
    description="The partner's own live hold with this code (the 8 characters or the QR payload). "
    "An unknown code, or another partner's, is 404 and counts as a wrong code like a confirmation: "
    "past the limit the partner gets 429. A code of its own that is no longer held is 409 saying why "
    "(code-expired, already-confirmed, already-cancelled). Looking changes nothing else.",
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def look_up_code(
    code: Annotated[Text, Path(min_length=1, max_length=64)], db: Db, settings: AppSettings, caller: Caller
) -> RedemptionBody:
    require(caller, Role.PARTNER)
    r = await look_up(db, settings, caller.sub, code_of(code))
    return RedemptionBody.of(r, show_code=False)


@router.get(
    "/v1/partner/redemptions",
    response_model=RedemptionPage,
    tags=["partners"],
    summary="The partner's own redemptions, newest first",
    responses=problem_responses(401, 403, 422),
)
async def partner_redemptions(
    db: Db,
    caller: Caller,
    status: StatusFilter | None = None,
    start: Annotated[DateTime | None, Query(alias="from")] = None,
    end: Annotated[DateTime | None, Query(alias="to")] = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> RedemptionPage:
    require(caller, Role.PARTNER)
    before_at = _created_before(cursor)
    async with db.read() as conn:
        rows = await RedemptionQueries(conn).of_partner(caller.sub, _status(status), start, end, limit, before_at)
    return _page(rows, limit, show_code=False)


@router.get(
    "/v1/partner/settlement",
    response_model=Settlement,
    tags=["partners"],
    summary="A month's confirmed redemptions and points, from the ledger (partner; operator with partner_id)",
    responses=problem_responses(401, 403, 422),
)
async def settlement(
    db: Db,
    caller: Caller,
    month: Annotated[str, Query(pattern=MONTH, description="YYYY-MM, by confirmation time in Asia/Shanghai")],
    partner_id: Annotated[str | None, Query(pattern=ID)] = None,
) -> Settlement:
    require(caller, Role.PARTNER, Role.OPERATOR)
    if caller.role is Role.PARTNER:
        partner_id = caller.sub
    elif partner_id is None:
        raise PartnerRequired()
    async with db.read() as conn:
        lines = await RedemptionQueries(conn).settlement(partner_id, *month_bounds(month))
    done = settlement_of(partner_id, month, lines)
    return Settlement(
        partner_id=done.partner_id,
        month=done.month,
        redemptions=done.redemptions,
        points_total=done.points_total,
        items=[SettlementItem.model_validate(line, from_attributes=True) for line in done.lines],
    )
