"""The points worker's Kafka entrypoint: consumes ``activity-events`` in batches, scores each batch in
one transaction (``Scorer.score_batch``); the consumer commits the offsets after that transaction
returned. A message that cannot be scored is dead-lettered alone."""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog

from libs.platform.db import Database
from libs.platform.kafka import BatchConsumer, Message
from libs.platform.settings import Settings
from services.points import metrics
from services.points.handlers import Scorer, score_kafka_batch, set_aside_message

log = structlog.get_logger(__name__)


def activity_consumer(settings: Settings, db: Database, scorer: Scorer) -> BatchConsumer:
    """The consumer of ``activity-events`` in the points consumer group."""

    async def handle(messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        outcome = await score_kafka_batch(db, scorer, messages)  # committed; then the consumer commits offsets
        metrics.record_batch(outcome, messages, started)
        log.debug(
            "worker.batch",
            messages=len(messages),
            scored=len(outcome.scored),
            dead_letters=len(outcome.dead_letters),
            duplicates=outcome.duplicates,
        )

    async def quarantine(message: Message, exc: Exception) -> None:
        outcome = await set_aside_message(db, scorer, message, exc)
        metrics.record_unscorable("kafka")
        metrics.record_batch(outcome, [], time.perf_counter())

    return BatchConsumer(settings, settings.topic_activity_events, settings.points_consumer_group, handle, quarantine)
