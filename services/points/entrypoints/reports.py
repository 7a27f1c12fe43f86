"""HTTP entrypoint of the operators' points report (积分台账): JSON by default, CSV or Excel by Accept.
A module-level router, included by the bootstrap beside the api router."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, Field

from libs.ledger.model import RIDER_ID_PATTERN
from libs.platform.auth import Role
from libs.platform.http import Caller, Db, PageLimit, problem_responses, require
from libs.platform.tables import Format, download, format_of, table_responses
from services.points.domain.reports import By, PointsRow, filename, page_after, period_of, points_table
from services.points.reports import ReportQueries

router = APIRouter()

DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # the shape; period_of checks the calendar, the order and the span


class PointsItem(BaseModel):
    key: str = Field(description="the category, the rider id or the day (YYYY-MM-DD)")
    awarded: int
    adjusted: int
    redeemed: int
    lapsed: int
    events: int


class PointsReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    by: By
    items: list[PointsItem]
    next_cursor: str | None = Field(description="the last key of this page, when there may be more")


@router.get(
    "/v1/reports/points",
    response_model=PointsReport,
    response_model_by_alias=True,
    tags=["reports"],
    summary="Points awarded, adjusted, redeemed and lapsed in Asia/Shanghai days, by category, rider or day (operator)",
    description="Both days included, by the entry's recorded time. `Accept: text/csv` or the Excel type "
    "gives the whole table (no paging) as a file with Chinese column names; any other Accept answers JSON.",
    responses={**table_responses(PointsReport), **problem_responses(401, 403, 422)},
)
async def points_report(
    db: Db,
    caller: Caller,
    response: Response,
    from_: Annotated[str, Query(alias="from", pattern=DAY, description="the first day, YYYY-MM-DD")],
    to: Annotated[str, Query(pattern=DAY, description="the last day, YYYY-MM-DD (included), within 366 days")],
    by: By,
    limit: PageLimit = 500,
    cursor: Annotated[
        str | None, Query(pattern=RIDER_ID_PATTERN.pattern, description="the next_cursor of the previous page")
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> PointsReport | Response:
    response.headers["Vary"] = "Accept"  # the same URL answers JSON or a file
    require(caller, Role.OPERATOR)
    period = period_of(from_, to)
    after = page_after(by, cursor)
    fmt = format_of(accept)
    async with db.read() as conn:
        if fmt is not Format.JSON:
            rows = await ReportQueries(conn).points(period, by, None, None)
            return await download(points_table(by, rows), fmt, filename(period, by), "积分台账")
        rows = await ReportQueries(conn).points(period, by, after, limit)
    return PointsReport.model_validate(
        {
            "from": from_,
            "to": to,
            "by": by,
            "items": [_item(r) for r in rows],
            "next_cursor": rows[-1].key if len(rows) == limit else None,
        }
    )


def _item(r: PointsRow) -> PointsItem:
    return PointsItem(
        key=r.key, awarded=r.awarded, adjusted=r.adjusted, redeemed=r.redeemed, lapsed=r.lapsed, events=r.events
    )
