"""HTTP entrypoint of the points service's rules: the version in force, every published version, and
what `warmbee rules check | what-if | publish` do, for a rules file sent as the request body (YAML).
A module-level router: the bootstrap includes it; the routes read the file through ``rules_files`` and
call the same use cases as the command line."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import structlog
import yaml
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from libs.platform.auth import Role
from libs.platform.http import AppSettings, Caller, Db, problem_responses, require
from services.points.domain.rules import Rules
from services.points.handlers import publish_rules, published_rules, rules_in_force
from services.points.replay import WhatIfReport, what_if_apart, what_if_period
from services.points.rules_files import YAML_TYPES, parse_rules, rules_text
from services.points.store import PublishedRules

log = structlog.get_logger(__name__)

router = APIRouter()

# The OpenAPI request body of the routes that take a rules file; FastAPI reads none itself.
RULES_FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a rules file, as `warmbee rules check` reads it (see rules/warmbee-default.v1.yaml)",
        "content": {
            media: {"schema": {"type": "string", "description": "YAML: rules_id, version, effective_from, categories"}}
            for media in YAML_TYPES
        },
    }
}
Day = Annotated[date, Query(description="YYYY-MM-DD, a day in the rules' time zone (Asia/Shanghai)")]


class RulesBody(BaseModel):
    rules_id: str
    version: int
    effective_from: datetime
    timezone: str
    categories: dict[str, Any]
    lapse: dict[str, int] | None = Field(
        default=None, description="when points awarded under it lapse (after_months | end_of_year_after); null: never"
    )

    @classmethod
    def of(cls, r: Rules) -> RulesBody:
        return cls(
            rules_id=r.rules_id,
            version=r.version,
            effective_from=r.effective_from,
            timezone=r.timezone,
            categories=r.categories.model_dump(mode="json", exclude_none=True),
            lapse=r.lapse.model_dump(exclude_none=True) if r.lapse else None,
        )


class RulesVersionBody(BaseModel):
    rules_id: str
    version: int
    effective_from: datetime
    published_at: datetime
    published_by: str | None
    document: dict[str, Any] = Field(description="the version as stored (JSON)")
    yaml: str = Field(description="the stored document written out as YAML (the uploaded text is not kept)")

    @classmethod
    def of(cls, p: PublishedRules) -> RulesVersionBody:
        document = p.rules.model_dump(mode="json", exclude_none=True)
        return cls(
            rules_id=p.rules.rules_id,
            version=p.rules.version,
            effective_from=p.rules.effective_from,
            published_at=p.published_at,
            published_by=p.published_by,
            document=document,
            yaml=yaml.safe_dump(document, allow_unicode=True, sort_keys=False),
        )


class RulesVersionPage(BaseModel):
    items: list[RulesVersionBody]


class CategoryChange(BaseModel):
    category: str
    events: int
    current: int = Field(description="points under the rules in force at each event's time")
    candidate: int = Field(description="points under the candidate file")
    change: int


class RiderChange(BaseModel):
    rider_id: str
    current: int
    candidate: int
    change: int


class LapsingPoints(BaseModel):
    on: date = Field(description="the last day these points are good for (Asia/Shanghai)")
    points: int


class WhatIfLapsing(BaseModel):
    current: list[LapsingPoints] = Field(description="under the rules in force: the period's awards that are lots")
    candidate: list[LapsingPoints] = Field(description="under the candidate's lapse policy (empty: none lapse)")


class WhatIfBody(BaseModel):
    rules_id: str
    version: int
    from_: date = Field(alias="from")
    to: date = Field(description="the day after the last")
    events: int
    current: int
    candidate: int
    change: int
    categories: list[CategoryChange]
    riders_changed: int = Field(description="how many riders' points would change")
    riders: list[RiderChange] = Field(description="the `top` riders most affected, largest change first")
    lapsing: WhatIfLapsing = Field(description="the period's awarded points that would lapse, by their last day")

    @classmethod
    def of(cls, rules: Rules, first: date, after_last: date, report: WhatIfReport, top: int) -> WhatIfBody:
        return cls.model_validate(
            {
                "rules_id": rules.rules_id,
                "version": rules.version,
                "from": first,
                "to": after_last,
                "events": report.events,
                "current": report.total_current,
                "candidate": report.total_candidate,
                "change": report.total_candidate - report.total_current,
                "categories": [
                    CategoryChange(
                        category=name,
                        events=c.events,
                        current=c.current,
                        candidate=c.candidate,
                        change=c.candidate - c.current,
                    )
                    for name, c in sorted(report.categories.items())
                ],
                "riders_changed": len(report.riders),
                "riders": [
                    RiderChange(rider_id=rider, current=before, candidate=after, change=after - before)
                    for rider, before, after in report.riders[:top]
                ],
                "lapsing": WhatIfLapsing(
                    current=[LapsingPoints(on=d, points=n) for d, n in report.lapsing_current.items()],
                    candidate=[LapsingPoints(on=d, points=n) for d, n in report.lapsing_candidate.items()],
                ),
            }
        )


@router.get(
    "/v1/rules",
    response_model=RulesBody,
    tags=["rules"],
    summary="The rules in force now",
    responses=problem_responses(401, 404),
)
async def rules(db: Db, caller: Caller) -> RulesBody:
    return RulesBody.of(await rules_in_force(db, datetime.now(UTC)))


@router.get(
    "/v1/rules/versions",
    response_model=RulesVersionPage,
    tags=["rules"],
    summary="Every published rules version with its document, by the time it takes effect (operator)",
    responses=problem_responses(401, 403),
)
async def versions(db: Db, caller: Caller) -> RulesVersionPage:
    require(caller, Role.OPERATOR)
    return RulesVersionPage(items=[RulesVersionBody.of(p) for p in await published_rules(db)])


@router.post(
    "/v1/rules/check",
    response_model=RulesBody,
    tags=["rules"],
    summary="Validate a rules file; a 422 lists every problem with its line, column and path (operator)",
    responses=problem_responses(401, 403, 413, 415, 422),
    openapi_extra=RULES_FILE_BODY,
)
async def check(request: Request, caller: Caller) -> RulesBody:
    require(caller, Role.OPERATOR)
    return RulesBody.of(await _rules_of(request))


@router.post(
    "/v1/rules/what-if",
    response_model=WhatIfBody,
    response_model_by_alias=True,
    tags=["rules"],
    summary="What a rules file would have changed over stored events, per category and rider (operator)",
    description="Scores the events of the days `from` to the day before `to` under the rules in force and "
    "under the file, both from empty counters, and writes nothing. At most `rules_what_if_max_days` days.",
    responses=problem_responses(401, 403, 413, 415, 422),
    openapi_extra=RULES_FILE_BODY,
)
async def try_out(
    request: Request,
    settings: AppSettings,
    caller: Caller,
    first: Annotated[date, Query(alias="from", description="the first day, YYYY-MM-DD, in the rules' zone")],
    after_last: Annotated[date, Query(alias="to", description="the day after the last, YYYY-MM-DD")],
    top: Annotated[int, Query(ge=1, le=1000, description="riders to list, most affected first")] = 20,
) -> WhatIfBody:
    require(caller, Role.OPERATOR)
    candidate = await _rules_of(request)
    what_if_period(candidate.zone, first, after_last, settings.rules_what_if_max_days)  # or a 422 names it
    report = await what_if_apart(settings, candidate, first, after_last)
    return WhatIfBody.of(candidate, first, after_last, report, top)


@router.post(
    "/v1/rules/versions",
    status_code=201,
    response_model=RulesVersionBody,
    tags=["rules"],
    summary="Publish a rules file as a new version; the same file again answers 200 with it (operator)",
    responses=problem_responses(401, 403, 409, 413, 415, 422) | {200: {"description": "published before"}},
    openapi_extra=RULES_FILE_BODY,
)
async def publish(
    request: Request, response: Response, db: Db, settings: AppSettings, caller: Caller
) -> RulesVersionBody:
    require(caller, Role.OPERATOR)
    candidate = await _rules_of(request)
    lead = timedelta(seconds=settings.rules_min_lead_s)
    done = await publish_rules(db, candidate, caller.sub, lead, same_again_is_done=True)
    if not done.created:
        response.status_code = 200
    log.info(
        "rules.published",
        operator=caller.sub,
        rules_id=candidate.rules_id,
        version=candidate.version,
        created=done.created,
    )
    return RulesVersionBody.of(done.version)


async def _rules_of(request: Request) -> Rules:
    return parse_rules(rules_text(await request.body(), request.headers.get("content-type")), "body")
