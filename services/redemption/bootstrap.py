"""Composition root of the redemption service: database, outbox relay, expiry sweep, HTTP app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import Database
from libs.platform.http import create_app
from libs.platform.loops import LoopGuard, pause
from libs.platform.metrics import watch_pool
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.redemption.entrypoints import api
from services.redemption.handlers import expire_due, measure_open_holds

VERSION = "0.1.0"
SWEEP_STEP = 100  # holds expired between two looks at whether the service is stopping
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


class ExpirySweep:
    """Expires holds past their time; holds that expired while the service was down go at start, one
    transaction each, until none is due. An error it did not expect is logged, counted
    (``warmbee_loop_failures_total{loop="expiry_sweep"}``) and retried after a growing pause: the
    sweep never ends, or holds would stay held and their points locked away."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._stopping = asyncio.Event()
        self._guard = LoopGuard("expiry_sweep")

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # any error at all: log, count, back off, go on
                await pause(self._stopping, self._guard.failed(exc, expected=isinstance(exc, DATABASE_AWAY)))
                continue
            self._guard.succeeded()
            await pause(self._stopping, self._settings.redemption_expiry_sweep_s)

    async def sweep(self) -> None:
        """Expire every hold that is due (stopping early when the service stops), then export the gauge."""
        while await expire_due(self._db, self._settings, SWEEP_STEP) == SWEEP_STEP and not self._stopping.is_set():
            pass
        await measure_open_holds(self._db)

    def stop(self) -> None:
        self._stopping.set()


def build_app(settings: Settings) -> FastAPI:
    db = Database(settings)
    watch_pool("redemption", db)
    relay = relay_for(db, settings, [settings.topic_points_ledger], {ENTRIES: render_entries})
    sweep = ExpirySweep(db, settings)

    async def readiness() -> dict[str, bool]:
        return {"database": await db.ping(), "broker": await relay.broker_reachable()}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.open()
        tasks = [
            asyncio.create_task(relay.run(), name="outbox-relay"),
            asyncio.create_task(sweep.run(), name="expiry-sweep"),
        ]
        try:
            yield
        finally:
            relay.stop()
            sweep.stop()
            await asyncio.gather(*tasks)
            await relay.close()
            await db.close()

    app = create_app(
        settings,
        "redemption",
        "warmbee redemption service",
        VERSION,
        readiness,
        lifespan,
        description="Riders spend points at partner merchants, hospitals and barbers; partners confirm codes.",
    )
    api.register(app, settings, db)
    return app
