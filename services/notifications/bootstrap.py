"""Composition root of the notifications service, and only that: database and HTTP app. (The consumer of
points-ledger and the sender join it as they land: issue 17.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from libs.platform.db import Database
from libs.platform.http import create_app
from libs.platform.metrics import watch_pool
from libs.platform.settings import Settings
from services.notifications.entrypoints import api
from services.notifications.sealing import Sealer

VERSION = "0.1.0"


def build_app(settings: Settings) -> FastAPI:
    Sealer.of(settings)  # a key that cannot seal stops the service at start, not at the first subscription
    db = Database(settings)
    watch_pool("notifications", db)

    async def readiness() -> dict[str, bool]:
        return {"database": await db.ping()}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.open()
        try:
            yield
        finally:
            await db.close()

    app = create_app(
        settings,
        "notifications",
        "warmbee notifications service",
        VERSION,
        readiness,
        lifespan,
        description="Signed webhooks (Standard Webhooks) of what the ledger records, for operators, partners "
        "and sources.",
        db=db,
    )
    app.include_router(api.router)
    return app
