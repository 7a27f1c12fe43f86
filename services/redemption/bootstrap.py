"""Composition root of the redemption service: database, outbox relay, expiry sweep, HTTP app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import TRANSIENT, Database
from libs.platform.http import create_app
from libs.platform.metrics import watch_pool
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.redemption.entrypoints import api
from services.redemption.handlers import expire_due, measure_open_holds

VERSION = "0.1.0"
log = structlog.get_logger(__name__)


class ExpirySweep:
    """Expires holds past their time; holds that expired while the service was down go at start."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                while await expire_due(self._db, self._settings) == 100:
                    pass
                await measure_open_holds(self._db)
            except TRANSIENT as exc:
                log.warning("expiry.failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.redemption_expiry_sweep_s)

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
