"""Composition root of the redemption service, and only that: database, outbox relay, expiry job, HTTP app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import Database
from libs.platform.http import create_app
from libs.platform.metrics import watch_pool
from libs.platform.periodic import Background
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.redemption.entrypoints import api, jobs, reports

VERSION = "0.1.0"


def build_app(settings: Settings) -> FastAPI:
    db = Database(settings)
    watch_pool("redemption", db)
    relay = relay_for(db, settings, [settings.topic_points_ledger], {ENTRIES: render_entries})

    async def readiness() -> dict[str, bool]:
        return {"database": await db.ping(), "broker": await relay.broker_reachable()}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.open()
        try:
            async with Background(relay, jobs.expiry_sweep(db, settings)):
                yield
        finally:
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
        db=db,
    )
    app.include_router(api.router)
    app.include_router(reports.router)
    return app
