"""The points worker: consumes ``activity-events`` in batches and scores each batch in one
transaction, then commits the offsets; relays its outbox (dead letters, ledger entries)."""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from libs.activity.model import CATEGORIES, load_schemas
from libs.activity.store import ActivityStore
from libs.ledger.feed import ENTRIES, render_entries
from libs.platform.db import TRANSIENT, Database
from libs.platform.kafka import BatchConsumer, Message
from libs.platform.loops import LoopGuard, pause, write_isolating
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
UNSCORABLE = Counter(
    "warmbee_unscorable_events_total",
    "Events dead-lettered because the scorer could not score them (a value the rules or the database cannot "
    "handle, a defect), alone, so that the rest of their batch was scored; via: kafka or http",
    ["via"],
)
UNSCORED_OLDEST_AGE = Gauge(
    "warmbee_unscored_event_oldest_age_seconds",
    "Age of the oldest event accepted over HTTP that is neither scored nor dead-lettered (0: none waits)",
)
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
for _via in ("kafka", "http"):
    UNSCORABLE.labels(_via)
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
    """Every few seconds, scores stored events that Kafka has not brought within ``pending_after_s``.

    It remembers how far back it must look (``_since``), and moves that mark only after what it scored
    committed, and with an overlap, so an event whose transaction committed late is still seen. An event
    it cannot score is dead-lettered alone (``write_isolating``); the others are scored."""

    PAGE = 1000
    OVERLAP = timedelta(seconds=60)

    def __init__(self, db: Database, scorer: Scorer, settings: Settings) -> None:
        self._db = db
        self._scorer = scorer
        self._settings = settings
        self._stopping = asyncio.Event()
        self._since: datetime | None = None  # None: look through every stored event once
        self._guard = LoopGuard("pending_sweep")

    async def run(self) -> None:
        delay = self._settings.pending_sweep_interval_s
        while not self._stopping.is_set():
            await pause(self._stopping, delay)
            if self._stopping.is_set():
                return
            try:
                await self.sweep()
                self._guard.succeeded()
                delay = self._settings.pending_sweep_interval_s
            except Exception as exc:  # whatever it was, the sweep goes on at its next turn
                delay = max(self._guard.failed(exc, expected=isinstance(exc, TRANSIENT)), delay)

    async def sweep(self) -> BatchOutcome:
        """Score (or dead-letter) what waits; returns what became of it."""
        older_than = datetime.now(UTC) - timedelta(seconds=self._settings.pending_after_s)
        since = self._since
        done = BatchOutcome()
        while True:
            async with self._db.read() as conn:
                rows = await ActivityStore(conn).pending(self.PAGE, since, older_than)
            page = await self._score_page([r["event"] for r in rows])
            done.scored += page.scored
            done.dead_letters += page.dead_letters
            if len(rows) < self.PAGE:
                break
            since = rows[-1]["received_at"]  # the next page: those at this instant are scored now
        self._since = older_than - self.OVERLAP  # committed: from here on only the newer ones
        await self._measure_unscored()
        return done

    async def _score_page(self, documents: list[dict[str, object]]) -> BatchOutcome:
        started = time.perf_counter()
        outcome = BatchOutcome()
        await write_isolating(
            documents,
            lambda part: self._score(part, outcome),
            lambda document, exc: self._set_aside(document, exc, outcome),
        )
        if outcome.scored or outcome.dead_letters:
            log.info("sweep.scored", events=len(outcome.scored), dead_letters=len(outcome.dead_letters))
            _observe(outcome, [], started)
        return outcome

    async def _score(self, documents: Sequence[dict[str, object]], outcome: BatchOutcome) -> None:
        part = await self._db.run(lambda conn: self._scorer.score_stored(conn, documents))
        outcome.scored += part.scored
        outcome.dead_letters += part.dead_letters

    async def _set_aside(self, document: dict[str, object], exc: Exception, outcome: BatchOutcome) -> None:
        outcome.dead_letters += await self._db.run(lambda conn: self._scorer.quarantine_stored(conn, document, exc))
        UNSCORABLE.labels("http").inc()

    async def _measure_unscored(self) -> None:
        """The age of the oldest event accepted over HTTP that is neither scored nor a dead letter."""
        async with self._db.read() as conn:
            oldest = await ActivityStore(conn).pending(1, self._since, datetime.now(UTC))
        age = (datetime.now(UTC) - oldest[0]["received_at"]).total_seconds() if oldest else 0.0
        UNSCORED_OLDEST_AGE.set(max(age, 0.0))

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

    async def quarantine(message: Message, exc: Exception) -> None:
        stored = await db.run(lambda conn: scorer.quarantine(conn, message, exc))
        UNSCORABLE.labels("kafka").inc()
        _observe(BatchOutcome(dead_letters=stored), [], time.perf_counter())

    consumer = BatchConsumer(
        settings, settings.topic_activity_events, settings.points_consumer_group, handle, quarantine
    )
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
