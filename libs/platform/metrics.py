"""Prometheus metrics shared by every warmbee process: HTTP, outbox, Kafka consumer, background loops and
jobs, database pool.

Conventions: ``warmbee_`` prefix, base units in the name (``_seconds``, ``_messages``, ``_connections``),
``_total`` for counters, and only bounded label values (services, routes, topics, partitions, categories,
partner kinds; never a rider id, an event id or a code). Metrics that belong to one service are defined
in its ``services/<svc>/metrics.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from libs.platform.db import Database

HTTP_REQUESTS = Counter(
    "warmbee_http_requests_total", "HTTP requests answered", ["service", "route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "warmbee_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

OUTBOX_BACKLOG = Gauge(
    "warmbee_outbox_backlog_messages",
    "Outbox messages waiting to be relayed to Kafka (parked ones not counted)",
    ["topic"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "warmbee_outbox_oldest_age_seconds",
    "Age of the oldest outbox message waiting to be relayed (0 when none waits; parked ones not counted)",
    ["topic"],
)
OUTBOX_RELAYED = Counter("warmbee_outbox_relayed_messages_total", "Outbox messages published to Kafka", ["topic"])
OUTBOX_PARKED = Gauge(
    "warmbee_outbox_parked_messages",
    "Outbox rows parked because they can never be published as they are (`warmbee outbox parked` lists them)",
    ["topic"],
)
OUTBOX_PARKED_TOTAL = Counter("warmbee_outbox_parked_total", "Outbox rows a relay parked", ["topic"])

CONSUMER_LAG = Gauge(
    "warmbee_consumer_lag_messages",
    "Messages in a partition not yet fetched by this consumer (high-water mark minus position)",
    ["topic", "partition"],
)

# Background work (libs/platform/loops.py, periodic.py).
LOOP_FAILURES = Counter(
    "warmbee_loop_failures_total",
    "Errors a background loop survived: logged, backed off, went on (loop: worker_lane, pending_sweep, "
    "reconcile, relay, expiry_sweep, ...)",
    ["loop"],
)
JOB_RUNS = Counter("warmbee_job_runs_total", "Runs of a background job, by outcome: ok or failed", ["job", "outcome"])
JOB_SECONDS = Histogram(
    "warmbee_job_duration_seconds",
    "Time one run of a background job took",
    ["job"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOB_LAST_SUCCESS = Gauge(
    "warmbee_job_last_success_timestamp_seconds", "When a background job last finished a run without error", ["job"]
)


class _PoolCollector(Collector):
    """Database pool use of this process, read at scrape time (no refresh loop to fall behind)."""

    def __init__(self) -> None:
        self._databases: dict[str, Database] = {}

    def watch(self, service: str, db: Database) -> None:
        self._databases[service] = db  # the newest wins: a test may build an app twice in one process

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families(list(self._databases.items()))

    @staticmethod
    def _families(databases: list[tuple[str, Database]] | None = None) -> list[GaugeMetricFamily]:
        size = GaugeMetricFamily(
            "warmbee_db_pool_connections", "Connections open in the database pool", labels=["service"]
        )
        idle = GaugeMetricFamily("warmbee_db_pool_idle_connections", "Open connections not in use", labels=["service"])
        most = GaugeMetricFamily(
            "warmbee_db_pool_max_connections", "Most connections the pool may open", labels=["service"]
        )
        for service, db in databases or []:
            try:
                pool = db.pool
            except RuntimeError:  # not open yet, or closed
                continue
            size.add_metric([service], pool.get_size())
            idle.add_metric([service], pool.get_idle_size())
            most.add_metric([service], pool.get_max_size())
        return [size, idle, most]


_POOLS = _PoolCollector()
REGISTRY.register(_POOLS)


def watch_pool(service: str, db: Database) -> None:
    """Export the pool use of ``db`` as ``warmbee_db_pool_*{service=...}``."""
    _POOLS.watch(service, db)
