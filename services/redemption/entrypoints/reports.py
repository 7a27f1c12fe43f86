"""HTTP entrypoint of the operators' settlement report: every partner's settlement of a month (the same
reading as GET /v1/partner/settlement, partner by partner), as JSON, CSV or Excel by Accept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from libs.platform.auth import Role
from libs.platform.http import Caller, Db, problem_responses, require
from libs.platform.tables import Format, download, format_of, table_responses
from services.redemption.domain.catalogue import Partner
from services.redemption.domain.settlement import Settlement, month_bounds, settlement_of, settlement_table
from services.redemption.entrypoints.api import MONTH
from services.redemption.queries import RedemptionQueries

router = APIRouter()


class PartnerSettlement(BaseModel):
    partner_id: str
    name: str
    kind: str
    redemptions: int
    points_total: int


class SettlementsReport(BaseModel):
    month: str
    items: list[PartnerSettlement]


@router.get(
    "/v1/reports/settlements",
    response_model=SettlementsReport,
    tags=["reports"],
    summary="Every partner's settlement of a month, zeros included (operator)",
    description="By confirmation time in Asia/Shanghai, as GET /v1/partner/settlement reads it; every partner, "
    "by kind and name. `Accept: text/csv` or the Excel type gives it as a file; any other Accept answers JSON.",
    responses={**table_responses(SettlementsReport), **problem_responses(401, 403, 422)},
)
async def settlements_report(
    db: Db,
    caller: Caller,
    response: Response,
    month: Annotated[str, Query(pattern=MONTH, description="YYYY-MM, by confirmation time in Asia/Shanghai")],
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> SettlementsReport | Response:
    response.headers["Vary"] = "Accept"  # the same URL answers JSON or a file
    require(caller, Role.OPERATOR)
    async with db.read() as conn:
        queries = RedemptionQueries(conn)
        partners = [Partner(p["partner_id"], p["name"], p["kind"]) for p in await queries.partners()]
        done = [
            settlement_of(p.partner_id, month, await queries.settlement(p.partner_id, *month_bounds(month)))
            for p in partners
        ]
    fmt = format_of(accept)
    if fmt is not Format.JSON:
        return await download(settlement_table(partners, done), fmt, f"settlements-{month}", "结算表")
    return SettlementsReport(month=month, items=[_item(p, s) for p, s in zip(partners, done, strict=True)])


def _item(p: Partner, s: Settlement) -> PartnerSettlement:
    return PartnerSettlement(
        partner_id=p.partner_id, name=p.name, kind=p.kind, redemptions=s.redemptions, points_total=s.points_total
    )
