"""HTTP entrypoint of the points service: balances, history, event status, adjustments (the rules: rules.py).
A module-level router: the bootstrap includes it; each route takes the database, the settings and the
caller as dependencies, calls one query or use case, and raises the domain's errors as they come."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, date, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from libs.activity.model import MAX_ID_CHARS, printable
from libs.i18n.language import LANGUAGES, Language
from libs.i18n.problems import P_, says
from libs.i18n.reasons import CODES, VOCABULARIES, ReasonCode, term
from libs.ledger.lot_store import Lapsing, LotStore
from libs.ledger.model import RIDER_ID_PATTERN
from libs.ledger.store import Balance, Entry, LedgerStore
from libs.platform.auth import Principal, Role
from libs.platform.errors import DomainError
from libs.platform.fields import JsonInt, Text, Words
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
from services.points.handlers import adjust
from services.points.queries import EventStatus, PointsQueries

log = structlog.get_logger(__name__)

router = APIRouter()

RiderId = Annotated[str, Path(pattern=RIDER_ID_PATTERN.pattern, description="the rider id")]


class LapsingBody(BaseModel):
    on: date = Field(description="the last day these points are good for (Asia/Shanghai); they lapse after it")
    points: int = Field(description="the rider's free points that lapse after that day unless spent")


class BalanceBody(BaseModel):
    rider_id: str
    available: int
    held: int
    earned_total: int
    redeemed_total: int
    as_of: datetime
    lapsing: list[LapsingBody] = Field(
        default_factory=list, description="the next three days after which points lapse (积分有效期), soonest first"
    )


class EntryBody(BaseModel):
    entry_id: int
    at: datetime
    amount: int
    kind: str
    category: str | None
    source: str | None
    event_id: str | None
    rule_id: str | None
    rule_version: int | None
    reason: str = Field(description="the reason in the language asked for with Accept-Language")
    reason_code: str = Field(
        description="stable, dotted; GET /v1/reason-codes lists them", examples=["award.cap_clipped"]
    )
    reason_params: dict[str, Any] = Field(description="the values of the reason's sentence")
    occurred_at: datetime | None = None
    actor: str | None = None

    @classmethod
    def of(cls, e: Entry, language: Language) -> EntryBody:
        return cls(
            entry_id=e.entry_id,
            at=e.at,
            amount=e.amount,
            kind=e.kind,
            category=e.category,
            source=e.source,
            event_id=e.event_id,
            rule_id=e.rule_id,
            rule_version=e.rule_version,
            reason=e.reason.render(language),
            reason_code=e.reason.code,
            reason_params=dict(e.reason.params),
            occurred_at=e.occurred_at,
            actor=e.actor,
        )


class EntryPage(BaseModel):
    items: list[EntryBody]
    next_cursor: str | None


class EventStatusBody(BaseModel):
    status: str
    points: int | None
    reason: str | None
    reason_code: str | None
    reason_params: dict[str, Any] | None
    rule_id: str | None
    rule_version: int | None
    category: str | None


class ReasonParamBody(BaseModel):
    name: str
    form: str = Field(description="how the value is shown: int, number, hours, text, term, month, week, year, date")
    vocabulary: dict[str, dict[str, str]] | None = Field(
        None, description="for a term: each value the parameter takes, in every language"
    )


class ReasonCodeBody(BaseModel):
    code: str
    when: str
    params: list[ReasonParamBody]
    templates: dict[str, list[str]] = Field(
        description="by language (zh, en): the template, or for a plural message one per plural form "
        "(English: one, other), with {name} fields"
    )


class ReasonCodePage(BaseModel):
    items: list[ReasonCodeBody]
    next_cursor: str | None


class AdjustmentRequest(BaseModel):
    rider_id: Text = Field(pattern=RIDER_ID_PATTERN.pattern)
    amount: JsonInt = Field(
        description="signed points; not 0", ge=-1_000_000, le=1_000_000, json_schema_extra={"not": {"const": 0}}
    )
    reason: Words = Field(
        min_length=1,
        max_length=500,
        description="one line in the operator's own words (at least one word, e.g. 补发), shown to the rider "
        "as it is, in every language",
    )


class RiderPage(BaseModel):
    items: list[BalanceBody]
    next_cursor: str | None = Field(description="the last rider id of this page, when there may be more")


RIDER_PREFIX = r"^[A-Za-z0-9_.:\-]{0,64}$"


@router.get(
    "/v1/riders",
    response_model=RiderPage,
    tags=["riders"],
    summary="Riders whose id starts with a prefix, by id, with their balances (operator)",
    responses=problem_responses(401, 403, 422),
)
async def riders(
    db: Db,
    caller: Caller,
    prefix: Annotated[str, Query(pattern=RIDER_PREFIX, description="the start of a rider id; empty: every rider")] = "",
    limit: PageLimit = 50,
    cursor: Annotated[
        str | None, Query(pattern=RIDER_ID_PATTERN.pattern, description="the next_cursor of the previous page")
    ] = None,
) -> RiderPage:
    require(caller, Role.OPERATOR)
    async with db.read() as conn:
        rows = await LedgerStore(conn).balances(prefix, cursor, limit)
        lapsing = await LotStore(conn).lapsing([b.rider_id for b in rows])
    now = datetime.now(UTC)
    return RiderPage(
        items=[_balance_body(b, now, lapsing.get(b.rider_id, [])) for b in rows],
        next_cursor=rows[-1].rider_id if len(rows) == limit else None,
    )


@router.get(
    "/v1/riders/{rider_id}/balance",
    response_model=BalanceBody,
    tags=["riders"],
    summary="A rider's balance (that rider, or an operator)",
    responses=problem_responses(401, 403, 422),
)
async def balance(rider_id: RiderId, db: Db, caller: Caller) -> BalanceBody:
    _may_read_rider(caller, rider_id)
    async with db.read() as conn:
        b, lapsing = await LedgerStore(conn).balance_and_lapsing(rider_id)
    return _balance_body(b, datetime.now(UTC), lapsing)


def _balance_body(b: Balance, now: datetime, lapsing: list[Lapsing]) -> BalanceBody:
    return BalanceBody(
        rider_id=b.rider_id,
        available=b.available,
        held=b.held,
        earned_total=b.earned_total,
        redeemed_total=b.redeemed_total,
        as_of=b.as_of or now,
        lapsing=[LapsingBody(on=x.on, points=x.points) for x in lapsing],
    )


@router.get(
    "/v1/riders/{rider_id}/entries",
    response_model=EntryPage,
    tags=["riders"],
    summary="A rider's history, newest first, with the reason for every entry",
    responses=problem_responses(401, 403, 422),
)
async def entries(
    rider_id: RiderId,
    db: Db,
    caller: Caller,
    language: ReaderLanguage,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> EntryPage:
    _may_read_rider(caller, rider_id)
    async with db.read() as conn:
        rows = await LedgerStore(conn).entries(rider_id, limit, decode_cursor(cursor))
    next_cursor = encode_cursor(rows[-1].entry_id) if len(rows) == limit else None
    return EntryPage(items=[EntryBody.of(e, language) for e in rows], next_cursor=next_cursor)


@router.get(
    "/v1/reason-codes",
    response_model=ReasonCodePage,
    tags=["riders"],
    summary="Every reason code, with its parameters and its Chinese and English templates",
    responses=problem_responses(401, 422),
)
async def reason_codes(caller: Caller, limit: PageLimit = 500, cursor: PageCursor = None) -> ReasonCodePage:
    after = decode_cursor(cursor)
    start = 0 if after is None else after + 1
    page = CODES[start : start + limit]
    next_cursor = encode_cursor(start + limit - 1) if start + limit < len(CODES) else None
    return ReasonCodePage(items=[_reason_code(c) for c in page], next_cursor=next_cursor)


@router.get(
    "/v1/events/{source}/{event_id}",
    response_model=EventStatusBody,
    tags=["events"],
    summary="What became of an event (its source, its rider, or an operator)",
    description="`source` and `event_id` are percent-encoded path segments: a `/` inside either is "
    "sent as `%2F` (a source such as `https://grid.example.cn/office`).",
    responses=problem_responses(401, 403, 404),
)
async def event_status(
    source: str, event_id: str, request: Request, db: Db, caller: Caller, language: ReaderLanguage
) -> EventStatusBody:
    return await _event_status(request, db, caller, language)


# The same, where a %2F in a segment made the decoded path longer: only the raw path tells which
# '/' separates the two segments.
@router.get("/v1/events/{encoded:path}", response_model=EventStatusBody, include_in_schema=False)
async def event_status_encoded(
    encoded: str, request: Request, db: Db, caller: Caller, language: ReaderLanguage
) -> EventStatusBody:
    return await _event_status(request, db, caller, language)


@router.post(
    "/v1/adjustments",
    status_code=201,
    response_model=EntryBody,
    tags=["operators"],
    summary="Adjust a rider's balance with a reason (operator)",
    responses=problem_responses(401, 403, 409, 422),
)
async def adjustment(
    body: AdjustmentRequest,
    db: Db,
    settings: AppSettings,
    caller: Caller,
    language: ReaderLanguage,
    idempotency_key: IdempotencyKey = None,
) -> EntryBody:
    require(caller, Role.OPERATOR)
    idempotency_key = key_required(idempotency_key, "adjustment")
    if body.amount == 0:
        raise DomainError("amount: must not be 0", kind="invalid-request", title=P_("Invalid adjustment"))
    entry = await adjust(db, settings, caller.sub, idempotency_key, body.rider_id, body.amount, body.reason)
    log.info(
        "adjustment.posted", operator=caller.sub, rider_id=body.rider_id, amount=body.amount, entry_id=entry.entry_id
    )
    return EntryBody.of(entry, language)


def _may_read_rider(caller: Principal, rider_id: str) -> None:
    if caller.role is Role.OPERATOR:
        return
    if caller.role is Role.RIDER and caller.sub == rider_id:
        return
    raise DomainError(
        says(P_("a rider reads only its own balance and history")), kind="forbidden", title=P_("Not your account")
    )


async def _event_status(request: Request, db: Db, caller: Principal, language: Language) -> EventStatusBody:
    source, event_id = _event_of_path(request)
    status = None
    if _storable(source) and _storable(event_id):  # else no stored event has it (a NUL, 1 MiB)
        async with db.read() as conn:
            status = await PointsQueries(conn).event_status(source, event_id)
    if status is None or not _may_see_event(caller, source, status):
        # Existence must not leak to callers who may not see the event.
        raise DomainError(
            f"no event {printable(event_id, 300)!r} from {printable(source, 300)!r} is known to you",
            kind="event-unknown",
        )
    return EventStatusBody(
        status=status.status,
        points=status.points,
        reason=status.reason.render(language),
        reason_code=status.reason.code,
        reason_params=dict(status.reason.params),
        rule_id=status.rule_id,
        rule_version=status.rule_version,
        category=status.category,
    )


def _reason_code(c: ReasonCode) -> ReasonCodeBody:
    return ReasonCodeBody(
        code=c.code,
        when=c.when,
        params=[
            ReasonParamBody(
                name=p.name,
                form=p.form,
                vocabulary=None
                if p.vocabulary is None
                else {
                    value: {lang: term(p.vocabulary, value, lang) for lang in LANGUAGES}
                    for value in VOCABULARIES[p.vocabulary]
                },
            )
            for p in c.params
        ],
        templates={lang: list(c.templates(lang)) for lang in LANGUAGES},
    )


def _vocabulary(name: str) -> dict[str, dict[str, str]]:
    return {value: {lang: term(name, value, lang) for lang in LANGUAGES} for value in VOCABULARIES[name]}


def _may_see_event(caller: Principal, source: str, status: EventStatus) -> bool:
    """An operator, the event's source, or its rider."""
    if caller.role is Role.OPERATOR or (caller.role is Role.SOURCE and caller.sub == source):
        return True
    return caller.role is Role.RIDER and status.rider_id == caller.sub


def _event_of_path(request: Request) -> tuple[str, str]:
    """``(source, event_id)`` from the raw path ``/v1/events/{source}/{event_id}``, each segment
    percent-decoded on its own, so that ``%2F`` inside one stays inside it."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    tail = raw.decode("latin-1").split("/v1/events/", 1)[-1]
    source, _, event_id = tail.partition("/")
    return urllib.parse.unquote(source), urllib.parse.unquote(event_id)


def _storable(text: str) -> bool:
    return 0 < len(text) <= MAX_ID_CHARS and printable(text) == text
