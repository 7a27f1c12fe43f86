"""Composition root of the points service, its only wiring: the HTTP API (``build_app``) and the worker
(``build_worker``: the Kafka consumer, the outbox relay, the pending sweep and reconciliation jobs)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from prometheus_client import start_http_server

from libs.activity.model import load_schemas
from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import Database
from libs.platform.http import create_app
from libs.platform.metrics import watch_pool
from libs.platform.periodic import Background
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.points.entrypoints import api, disputes, reports, rules, scoring
from services.points.handlers import RulesCache, Scorer

VERSION = "0.1.0"

log = structlog.get_logger(__name__)


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
        db=db,
    )
    app.include_router(api.router)
    app.include_router(rules.router)
    app.include_router(scoring.router)
    app.include_router(reports.router)
    app.include_router(disputes.router)
    return app


class Worker:
    """The points worker's parts, run together until ``stop()`` (SIGTERM, SIGINT)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        # Imported here, not above: they define the worker's metrics, which the API process must not export
        # (a second series of warmbee_dead_letters_total at 0, a reconciliation that never ran).
        from services.points.entrypoints import jobs
        from services.points.entrypoints.consumer import activity_consumer

        self.settings = settings
        self.db = db
        scorer = Scorer(settings, load_schemas(), RulesCache(settings.rules_reload_s))
        self.relay = relay_for(
            db, settings, [settings.topic_activity_events_dlq, settings.topic_points_ledger], {ENTRIES: render_entries}
        )
        self.background = Background(
            activity_consumer(settings, db, scorer),
            self.relay,
            jobs.pending_sweep_job(db, scorer, settings),
            jobs.reconcile_job(db, settings),
            jobs.disputes_job(db, settings),
            jobs.lapse_job(db, settings),
        )

    async def run(self) -> None:
        await self.db.open()
        try:
            log.info(
                "worker.started", topic=self.settings.topic_activity_events, group=self.settings.points_consumer_group
            )
            await self.background.run()
        finally:
            await self.relay.close()
            await self.db.close()
            log.info("worker.stopped")

    def stop(self) -> None:
        self.background.stop()


def build_worker(settings: Settings) -> Worker:
    db = Database(settings)
    watch_pool("points-worker", db)
    return Worker(settings, db)


async def run_worker(settings: Settings) -> None:
    """The worker in the foreground: its metrics on ``worker_metrics_port``, stopped by SIGTERM or SIGINT."""
    worker = build_worker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    start_http_server(settings.worker_metrics_port, addr=settings.host)
    await worker.run()
