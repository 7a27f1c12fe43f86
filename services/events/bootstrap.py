"""Composition root of the events service: settings, database, event schemas, the outbox relay (run in
the background while the app serves), the HTTP app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from libs.activity.model import load_schemas
from libs.platform.db import Database
from libs.platform.http import create_app
from libs.platform.metrics import watch_pool
from libs.platform.periodic import Background
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.events.entrypoints import api, contract

VERSION = "0.1.0"


def build_app(settings: Settings) -> FastAPI:
    db = Database(settings)
    watch_pool("events", db)
    relay = relay_for(db, settings, [settings.topic_activity_events])

    async def readiness() -> dict[str, bool]:
        return {"database": await db.ping(), "broker": await relay.broker_reachable()}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.open()
        try:
            async with Background(relay):
                yield
        finally:
            await relay.close()
            await db.close()

    app = create_app(
        settings,
        "events",
        "warmbee events service",
        VERSION,
        readiness,
        lifespan,
        description="Source systems publish activity events (CloudEvents 1.0) here when they cannot speak Kafka.",
        max_body_bytes=settings.max_body_bytes,  # a batch of up to max_batch_events events
        too_large_hint="split the batch into smaller requests",
        db=db,
    )
    app.state.schemas = load_schemas()
    app.state.contract = contract.load_contract()
    app.include_router(api.router)
    app.include_router(contract.router)
    api.document_batch_limit(app, settings.max_batch_events)
    return app
