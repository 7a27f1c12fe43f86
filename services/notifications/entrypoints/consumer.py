"""The notifications worker: a faust-streaming app that follows ``points-ledger`` and records, for every
event, a delivery per subscription that may hear of it, then acknowledges the event; and the senders
(``sending``), which work through the deliveries and notices that are due.

At least once, never lost: the agent reads with acknowledgements off (``noack_take``), records a batch in
one PostgreSQL transaction and acknowledges its events only after the commit; a crash before then reads
them again, and the unique (subscription, event) pair makes the second reading add nothing. An error never
escapes the agent: faust would restart it and commit past the batch it failed on (faust-streaming 0.15.3
lets a gap of one offset through), losing those events; the batch is retried in place instead, with a
growing pause, and counted, so a lasting fault shows as consumer lag and an alert, never as a loss."""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any, cast

import faust
import mode.loop
import structlog
from faust.types import EventT
from prometheus_client import start_http_server

from libs.platform.db import Database
from libs.platform.metrics import LOOP_FAILURES
from libs.platform.settings import Settings
from services.notifications.entrypoints.sending import (
    gateway_sender,
    send_forever,
    send_notices_forever,
    until_done,
    webhook_sender,
)
from services.notifications.handlers import read_events, record_deliveries_of
from services.notifications.notices import GATHER_RIDERS, make_due_notices, record_notices
from services.notifications.retention import prune_once

log = structlog.get_logger(__name__)

BATCH_MAX = 500  # events recorded in one transaction
BATCH_WITHIN_S = 0.2  # the longest an event waits for its batch to fill
NOTICES_EVERY_S = 1.0  # how often the awards' windows and the codes' warning times are looked at
NOTICE_PAGES_PER_TICK = 10
PRUNE_EVERY_S = 600.0  # how often retention removes done rows older than WARMBEE_NOTIFICATIONS_RETENTION_DAYS
PRUNE_BATCHES_PER_TICK = 50  # at most this many batches a run: a large first run spreads over a few


def build_worker_app(settings: Settings) -> faust.App:
    """The faust app of the notifications worker, configured from the settings (no web server: the
    metrics have a port of their own; no internal topics: the notifications keep no tables)."""
    app = faust.App(
        settings.notifications_consumer_group,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        # faust writes a data directory even without tables: under /tmp, not the (read-only) working dir.
        datadir=os.environ.get("FAUST_DATADIR") or os.path.join(tempfile.gettempdir(), "warmbee-faust"),
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        broker_session_timeout=settings.consumer_session_timeout_ms / 1000,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=20,
        broker_commit_every=BATCH_MAX,
        broker_commit_interval=0.5,  # acknowledged offsets reach the broker soon: fewer repeats after a crash
    )
    ledger = app.topic(
        settings.topic_points_ledger, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    db = Database(settings)
    ready = asyncio.Event()

    @app.task  # type: ignore[untyped-decorator]  # faust's task decorator is untyped for a no-argument task
    async def open_database() -> None:
        await until_done("notifications_database", db.open)
        ready.set()

    @app.agent(ledger, concurrency=1)  # one batch at a time: acknowledgements stay in offset order
    async def deliveries(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        await ready.wait()
        taking = cast(faust.Stream[bytes], stream)
        async for batch in taking.noack_take(BATCH_MAX, within=BATCH_WITHIN_S):
            events = cast(Sequence[EventT[bytes]], batch)  # it yields the events, whatever its annotation says
            read = read_events(_values(events))
            await until_done("notifications_consumer", partial(record_deliveries_of, db, read))
            await until_done("notifications_notices", partial(record_notices, db, settings, [e for e, _ in read]))
            for event in events:
                await stream.ack(event)
            yield None

    if settings.notifications_worker_sends_webhooks:  # else senders of their own do (sending.run_sender)

        @app.task  # type: ignore[untyped-decorator]  # faust's task decorator is untyped for a no-argument task
        async def sender() -> None:
            await ready.wait()
            async with webhook_sender(settings) as webhooks:
                await send_forever(db, settings, webhooks)

    @app.timer(interval=NOTICES_EVERY_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def due_notices() -> None:
        # A full page (a backlog: the worker was away) goes on at once, for at most a few pages a tick.
        for _ in range(NOTICE_PAGES_PER_TICK if ready.is_set() else 0):
            made = await _once("notifications_due_notices", partial(make_due_notices, db, settings))
            if made < GATHER_RIDERS:
                break

    @app.timer(interval=PRUNE_EVERY_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def retention() -> None:
        # Several replicas may prune at once: each deletes what is there, none twice.
        for _ in range(PRUNE_BATCHES_PER_TICK if ready.is_set() else 0):
            if not await _once("notifications_retention", partial(prune_once, db, settings)):
                break

    @app.task  # type: ignore[untyped-decorator]  # faust's task decorator is untyped for a no-argument task
    async def notice_sender() -> None:
        await ready.wait()
        async with gateway_sender(settings) as gateway:
            await send_notices_forever(db, settings, gateway)

    async def close_database(_: Any, **__: Any) -> None:
        await db.close()

    app.on_before_shutdown.connect(close_database)  # type: ignore[arg-type]

    return app


async def _once(loop: str, work: Any) -> int:
    """``work()`` once, and what it returned; an error is logged and counted (0: the timer tries again
    on its next tick)."""
    try:
        return int(await work())
    except asyncio.CancelledError:
        raise
    except Exception:
        LOOP_FAILURES.labels(loop).inc()
        log.exception("notifications.tick_failed", loop=loop)
        return 0


def _values(events: Sequence[EventT[bytes]]) -> list[bytes | None]:
    return [event.message.value for event in events]


def _credentials(settings: Settings) -> faust.auth.Credentials | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context() if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def run_worker(settings: Settings, services: Sequence[Any] = ()) -> None:
    """Run the worker until it is stopped (SIGTERM, SIGINT); its metrics on their own port. On uvloop,
    as every other warmbee process: on asyncio's own loop, its selector, handles and tasks took some 45 %
    of this worker's CPU under load (py-spy), faust making a few tasks and futures for every message."""
    mode.loop.use("uvloop")  # before faust makes its loop
    start_http_server(settings.notifications_worker_metrics_port, addr=settings.host)
    app = build_worker_app(settings)
    worker = faust.Worker(app, *services, loglevel=settings.log_level.lower(), override_logging=False)
    worker.execute_from_commandline()
