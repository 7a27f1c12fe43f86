"""The points worker: consumes ``activity-events`` in batches and scores each batch in one
transaction, then commits the offsets; relays its outbox (dead letters, ledger entries)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter, Histogram, start_http_server

from libs.activity.model import load_schemas
from libs.platform.db import Database
from libs.platform.kafka import BatchConsumer, Message
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.points.handlers import BatchOutcome, RulesCache, Scorer

log = structlog.get_logger(__name__)

EVENTS_SCORED = Counter("warmbee_events_scored_total", "Events scored", ["category", "outcome"])
POINTS_ISSUED = Counter("warmbee_points_issued_total", "Points awarded", ["category"])
EVENTS_CONSUMED = Counter("warmbee_events_consumed_total", "Kafka messages consumed", ["outcome"])
DEAD_LETTERS = Counter("warmbee_dead_letters_total", "Messages dead-lettered")
BATCH_SIZE = Histogram(
    "warmbee_worker_batch_size", "Messages per scoring batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2500)
)
BATCH_SECONDS = Histogram("warmbee_worker_batch_duration_seconds", "Time to score and write one batch")
ARRIVAL_LAG = Histogram(
    "warmbee_scoring_delay_from_arrival_seconds",
    "From the event's arrival on the broker to its scoring commit",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def _observe(outcome: BatchOutcome, messages: Sequence[Message], started: float) -> None:
    now_ms = time.time() * 1000
    if messages:
        BATCH_SIZE.observe(len(messages))
        BATCH_SECONDS.observe(time.perf_counter() - started)
    for m in messages:
        ARRIVAL_LAG.observe(max(now_ms - m.timestamp, 0) / 1000)
    for event, score in outcome.scored:
        outcome_label = "awarded" if score.points else "zero"
        EVENTS_SCORED.labels(event.category, outcome_label).inc()
        POINTS_ISSUED.labels(event.category).inc(score.points)
    EVENTS_CONSUMED.labels("duplicate").inc(outcome.duplicates)
    EVENTS_CONSUMED.labels("dead_lettered").inc(len(outcome.dead_letters))
    DEAD_LETTERS.inc(len(outcome.dead_letters))


class PendingSweep:
    """Every few seconds, scores stored events that Kafka has not brought within ``pending_after_s``."""

    def __init__(self, db: Database, scorer: Scorer, settings: Settings) -> None:
        self._db = db
        self._scorer = scorer
        self._settings = settings
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.pending_sweep_interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.sweep()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("sweep.failed", error=repr(exc))

    async def sweep(self) -> None:
        older_than = datetime.now(UTC) - timedelta(seconds=self._settings.pending_after_s)
        while True:
            started = time.perf_counter()
            outcome = await self._db.run(lambda conn: self._scorer.score_pending(conn, older_than, 1000))
            if outcome.scored:
                log.info("sweep.scored", events=len(outcome.scored))
                _observe(outcome, [], started)
            if len(outcome.scored) < 1000:
                return

    def stop(self) -> None:
        self._stopping.set()


async def run_worker(settings: Settings) -> None:
    db = Database(settings)
    await db.open()
    scorer = Scorer(settings, load_schemas(), RulesCache())

    async def handle(messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        outcome = await db.run(lambda conn: scorer.score_batch(conn, messages))
        _observe(outcome, messages, started)
        log.debug(
            "worker.batch",
            messages=len(messages),
            scored=len(outcome.scored),
            dead_letters=len(outcome.dead_letters),
            duplicates=outcome.duplicates,
        )

    consumer = BatchConsumer(settings, settings.topic_activity_events, settings.points_consumer_group, handle)
    relay = relay_for(db, settings, [settings.topic_activity_events_dlq, settings.topic_points_ledger])
    sweeper = PendingSweep(db, scorer, settings)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        consumer.stop()
        relay.stop()
        sweeper.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    start_http_server(settings.worker_metrics_port, addr=settings.host)
    log.info("worker.started", topic=settings.topic_activity_events, group=settings.points_consumer_group)
    try:
        await asyncio.gather(consumer.run(), relay.run(), sweeper.run())
    finally:
        await relay.close()
        await db.close()
        log.info("worker.stopped")
