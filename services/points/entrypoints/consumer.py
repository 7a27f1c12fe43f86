"""The points worker: consumes ``activity-events`` in batches and scores each batch in one
transaction, then commits the offsets; relays its outbox (dead letters, ledger entries)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import Counter, Histogram, start_http_server

from libs.activity.model import CATEGORIES, load_schemas
from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import TRANSIENT, Database
from libs.platform.kafka import BatchConsumer, Message
from libs.platform.metrics import watch_pool
from libs.platform.relay import relay_for
from libs.platform.settings import Settings
from services.points.domain.rules import Score
from services.points.handlers import BatchOutcome, RulesCache, Scorer
from services.reconcile.loop import ReconcileLoop

log = structlog.get_logger(__name__)

EVENTS_SCORED = Counter(
    "warmbee_events_scored_total",
    "Events scored, by outcome: awarded (points > 0), zero (a cap, a limit, rejected), duplicate_hazard "
    "(a later report of a hazard already paid in full)",
    ["category", "outcome"],
)
POINTS_ISSUED = Counter("warmbee_points_issued_total", "Points awarded", ["category"])
SCORED_OUTCOMES = ("awarded", "zero", "duplicate_hazard")
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
EVENT_TIME_LAG = Histogram(
    "warmbee_scoring_delay_from_event_time_seconds",
    "From the event's own time (when the activity happened) to its scoring commit; sources may send late",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400, 90 * 86400),
)
for _category in CATEGORIES:  # every series from the start, so rates and alerts see 0 rather than nothing
    POINTS_ISSUED.labels(_category)
    for _outcome in SCORED_OUTCOMES:
        EVENTS_SCORED.labels(_category, _outcome)


def scored_outcome(score: Score) -> str:
    if score.duplicate_hazard:
        return "duplicate_hazard"
    return "awarded" if score.points > 0 else "zero"


def _observe(outcome: BatchOutcome, messages: Sequence[Message], started: float) -> None:
    now_ms = time.time() * 1000
    if messages:
        BATCH_SIZE.observe(len(messages))
        BATCH_SECONDS.observe(time.perf_counter() - started)
    for m in messages:
        ARRIVAL_LAG.observe(max(now_ms - m.timestamp, 0) / 1000)
    now = time.time()
    scored: collections.Counter[tuple[str, str]] = collections.Counter()
    issued: collections.Counter[str] = collections.Counter()
    detailed = log.is_enabled_for(logging.DEBUG)
    for event, score in outcome.scored:
        outcome_name = scored_outcome(score)
        scored[event.category, outcome_name] += 1
        issued[event.category] += score.points
        EVENT_TIME_LAG.observe(max(now - event.time.timestamp(), 0))
        if detailed:
            log.debug(
                "event.scored",
                source=event.source,
                event_id=event.event_id,
                rider_id=event.rider_id,
                category=event.category,
                points=score.points,
                outcome=outcome_name,
            )
    for (category, outcome_name), n in scored.items():  # a labelled series is looked up once a batch
        EVENTS_SCORED.labels(category, outcome_name).inc(n)
    for category, points in issued.items():
        POINTS_ISSUED.labels(category).inc(points)
    for d in outcome.dead_letters:
        log.warning(
            "event.dead_lettered",
            source=d.source and d.source[:128],  # as sent, so bounded here
            event_id=d.event_id and d.event_id[:128],
            topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            reason=d.reason,
        )
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
            except TRANSIENT as exc:
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
    watch_pool("points-worker", db)
    await db.open()
    scorer = Scorer(settings, load_schemas(), RulesCache(settings.rules_reload_s))

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
    relay = relay_for(
        db,
        settings,
        [settings.topic_activity_events_dlq, settings.topic_points_ledger],
        {ENTRIES: render_entries},
    )
    sweeper = PendingSweep(db, scorer, settings)
    reconciler = ReconcileLoop(db, settings.reconcile_interval_s, settings.reconcile_stuck_after_s)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        consumer.stop()
        relay.stop()
        sweeper.stop()
        reconciler.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    start_http_server(settings.worker_metrics_port, addr=settings.host)
    log.info("worker.started", topic=settings.topic_activity_events, group=settings.points_consumer_group)
    try:
        await asyncio.gather(consumer.run(), relay.run(), sweeper.run(), reconciler.run())
    finally:
        await relay.close()
        await db.close()
        log.info("worker.stopped")
