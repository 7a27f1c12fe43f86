"""The points service's Prometheus metrics, and the functions that record them around its use cases,
after their transaction committed (the worker's batches, the sweep, dead letters, reconciliation)."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence

import structlog
from prometheus_client import Counter, Gauge, Histogram

from libs.activity.model import CATEGORIES
from libs.platform.kafka import Message
from services.points.domain.reconcile import Report
from services.points.domain.scoring import Score
from services.points.handlers import BatchOutcome

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
RECONCILE_MISMATCHES = Gauge(
    "warmbee_reconcile_mismatches", "Mismatches found by the last reconciliation (0: reconciled)"
)
RECONCILE_LAST_RUN = Gauge(
    "warmbee_reconcile_last_run_timestamp_seconds", "When reconciliation last finished (Unix time)"
)
RECONCILE_LAST_FULL_RUN = Gauge(
    "warmbee_reconcile_last_full_run_timestamp_seconds",
    "When reconciliation of the whole ledger last finished (Unix time); the runs between check what changed",
)
LAPSES = Counter("warmbee_lapses_total", "Lots lapsed by the lapse job: one lapse entry each")
POINTS_LAPSED = Counter(
    "warmbee_points_lapsed_total", "Points lapsed (积分有效期): what was left of lots past their day"
)
LAPSE_WARNINGS = Counter(
    "warmbee_lapse_warnings_total", "Warnings sent to riders of points lapsing within 30 days (one per rider and day)"
)
LOTS_OVERDUE = Gauge(
    "warmbee_lapse_overdue_lots",
    "Lots past their last good day with points left and none held, after the lapse job's last run (0: done)",
)
DISPUTES_OPEN = Gauge("warmbee_disputes_open", "Disputes (申诉) waiting for an operator's resolution")
DISPUTE_OLDEST_AGE = Gauge(
    "warmbee_dispute_oldest_open_age_seconds", "Age of the oldest open dispute (0: none is open)"
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


def record_batch(outcome: BatchOutcome, messages: Sequence[Message], started: float) -> None:
    """What one committed scoring transaction did: its size and time, each event's delay and outcome,
    its dead letters (``messages``: the Kafka batch, empty for the sweep and for one set aside)."""
    now_ms = time.time() * 1000
    if messages:
        BATCH_SIZE.observe(len(messages))
        BATCH_SECONDS.observe(time.perf_counter() - started)
    for m in messages:
        ARRIVAL_LAG.observe(max(now_ms - m.timestamp, 0) / 1000)
    _record_scored(outcome)
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


def _record_scored(outcome: BatchOutcome) -> None:
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


def record_unscorable(via: str) -> None:
    """One event dead-lettered alone because it could not be scored (``via``: kafka or http)."""
    UNSCORABLE.labels(via).inc()


def record_unscored_age(seconds: float) -> None:
    UNSCORED_OLDEST_AGE.set(max(seconds, 0.0))


def record_reconciliation(report: Report) -> None:
    RECONCILE_MISMATCHES.set(report.mismatches)
    RECONCILE_LAST_RUN.set(time.time())
    scope = "full" if report.since is None else "changed"
    if report.since is None:
        RECONCILE_LAST_FULL_RUN.set(time.time())
    if not report.ok:
        log.error("reconcile.mismatch", scope=scope, mismatches=report.mismatches, report=report.lines())
    else:
        log.info("reconcile.done", scope=scope, examined=sum(c.examined for c in report.checks))


def record_lapses(lapses: int, points: int, warnings: int, overdue: int) -> None:
    LOTS_OVERDUE.set(overdue)
    LAPSES.inc(lapses)
    POINTS_LAPSED.inc(points)
    LAPSE_WARNINGS.inc(warnings)
    if lapses or warnings:
        log.info("lapse.done", lapses=lapses, points=points, warnings=warnings)


def record_disputes_waiting(open_disputes: int, oldest_age_s: float) -> None:
    DISPUTES_OPEN.set(open_disputes)
    DISPUTE_OLDEST_AGE.set(max(oldest_age_s, 0.0))
