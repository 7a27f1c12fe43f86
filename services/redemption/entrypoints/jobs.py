"""The redemption service's background job: the expiry sweep, a ``Periodic`` step."""

from __future__ import annotations

import asyncpg

from libs.platform.db import Database
from libs.platform.periodic import Periodic
from libs.platform.settings import Settings
from services.redemption import metrics
from services.redemption.handlers import expire_due
from services.redemption.queries import RedemptionQueries

SWEEP_STEP = 100  # holds expired in one step, between two looks at whether the service is stopping
# A database that is away (restarting, failing over) is expected: logged without a traceback and not
# counted. Any other error, PostgreSQL's own included (a constraint refused, a bug), is counted.
DATABASE_AWAY = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


async def measure_open_holds(db: Database) -> None:
    async with db.read() as conn:
        metrics.set_open_holds(await RedemptionQueries(conn).open_holds_by_kind())


def expiry_sweep(db: Database, settings: Settings) -> Periodic:
    """Expires holds past their time, one transaction each; holds that expired while the service was
    down go at start. A full step means more may be due, so it runs again at once. It never ends (an
    error is counted in ``warmbee_loop_failures_total{loop="expiry_sweep"}`` and retried), or holds
    would stay held and their points locked away."""

    async def step() -> bool:
        more = await expire_due(db, settings, SWEEP_STEP) == SWEEP_STEP
        await measure_open_holds(db)
        return more

    return Periodic("expiry_sweep", step, settings.redemption_expiry_sweep_s, first_after_s=0, expected=DATABASE_AWAY)
