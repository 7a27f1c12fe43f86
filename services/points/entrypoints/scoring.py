"""HTTP entrypoint of the points service for the console's overview: is scoring keeping up?"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from libs.platform.auth import Role
from libs.platform.http import Caller, Db, problem_responses, require
from services.points.queries import PointsQueries

router = APIRouter()

# Events accepted over HTTP wait for the worker at most seconds; an hour's window bounds the count's cost
# (a busy hour is a few thousand rows) and anything older is `warmbee reconcile`'s to report.
WAITING_WINDOW_S = 3600
WAITING_CAP = 10_000


class ScoringStatus(BaseModel):
    last_scored_at: datetime | None = Field(description="when the newest award was recorded; null: none yet")
    waiting: int = Field(description=f"events accepted over HTTP in the last hour, not scored yet (<= {WAITING_CAP})")
    waiting_capped: bool = Field(description="true: more are waiting than were counted")
    oldest_waiting_received_at: datetime | None


@router.get(
    "/v1/scoring",
    response_model=ScoringStatus,
    tags=["operations"],
    summary="Whether scoring keeps up: the newest award and the events waiting to be scored (operator)",
    responses=problem_responses(401, 403),
)
async def scoring(db: Db, caller: Caller) -> ScoringStatus:
    require(caller, Role.OPERATOR)
    async with db.read() as conn:
        status = await PointsQueries(conn).scoring_status(WAITING_WINDOW_S, WAITING_CAP)
    return ScoringStatus(**status, waiting_capped=status["waiting"] >= WAITING_CAP)
