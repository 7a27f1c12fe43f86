"""Composition root of the points service: the HTTP API (the worker has its own, entrypoints/consumer.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from libs.platform.db import Database
from libs.platform.http import create_app
from libs.platform.metrics import watch_pool
from libs.platform.settings import Settings
from services.points.entrypoints import api

VERSION = "0.1.0"


def build_app(settings: Settings) -> FastAPI:
    db = Database(settings)
    watch_pool("points", db)

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
        "points",
        "warmbee points service",
        VERSION,
        readiness,
        lifespan,
        description="Riders' balances and histories, event status, operators' adjustments, the rules in force.",
    )
    api.register(app, settings, db)
    return app
