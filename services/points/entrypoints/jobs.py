"""The points worker's background jobs, each a ``Periodic`` step: the pending sweep (scores stored events
Kafka did not bring), reconciliation (checks what changed in the ledger, and the whole of it daily), the
lapse of points past their day with the warnings before it, and the measure of disputes waiting."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog

from libs.platform.db import Database
from libs.platform.loops import write_isolating
from libs.platform.periodic import Periodic
from libs.platform.settings import Settings
from services.points import metrics
from services.points.disputes import waiting
from services.points.domain.reconcile import Scope
from services.points.handlers import BatchOutcome, Scorer, reconcile, score_waiting, set_aside_stored
from services.points.lapsing import PAGE, lapse_due, overdue, warn_riders
from services.points.queries import PointsQueries

log = structlog.get_logger(__name__)


class PendingSweep:
    """Scores stored events that Kafka has not brought within ``pending_after_s``.

    It remembers how far back it must look (``_since``), and moves that mark only after what it scored
    committed, and with an overlap, so an event whose transaction committed late is still seen. An event
    it cannot score is dead-lettered alone (``write_isolating``); the others are scored."""

    PAGE = 1000
    OVERLAP = timedelta(seconds=60)

    def __init__(self, db: Database, scorer: Scorer, settings: Settings) -> None:
        self._db = db
        self._scorer = scorer
        self._settings = settings
        self._since: datetime | None = None  # None: look through every stored event once

    async def step(self) -> bool:
        """One run of the job: everything that waits is swept at once, so no more work waits after it."""
        await self.sweep()
        return False

    async def sweep(self) -> BatchOutcome:
        """Score (or dead-letter) what waits; returns what became of it."""
        older_than = datetime.now(UTC) - timedelta(seconds=self._settings.pending_after_s)
        since = self._since
        done = BatchOutcome()
        while True:
            async with self._db.read() as conn:
                rows = await PointsQueries(conn).pending(self.PAGE, since, older_than)
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
            metrics.record_batch(outcome, [], started)
        return outcome

    async def _score(self, documents: Sequence[dict[str, object]], outcome: BatchOutcome) -> None:
        part = await score_waiting(self._db, self._scorer, documents)
        outcome.scored += part.scored
        outcome.dead_letters += part.dead_letters

    async def _set_aside(self, document: dict[str, object], exc: Exception, outcome: BatchOutcome) -> None:
        outcome.dead_letters += (await set_aside_stored(self._db, self._scorer, document, exc)).dead_letters
        metrics.record_unscorable("http")

    async def _measure_unscored(self) -> None:
        """The age of the oldest event accepted over HTTP that is neither scored nor a dead letter."""
        async with self._db.read() as conn:
            oldest = await PointsQueries(conn).pending(1, self._since, datetime.now(UTC))
        age = (datetime.now(UTC) - oldest[0]["received_at"]).total_seconds() if oldest else 0.0
        metrics.record_unscored_age(age)


def pending_sweep_job(db: Database, scorer: Scorer, settings: Settings) -> Periodic:
    """Every ``pending_sweep_interval_s``, the first after one interval (Kafka brings most events first)."""
    sweep = PendingSweep(db, scorer, settings)
    return Periodic("pending_sweep", sweep.step, settings.pending_sweep_interval_s)


def reconcile_job(db: Database, settings: Settings) -> Periodic:
    """Every ``reconcile_interval_s``, the first after one interval; the result becomes metrics. The
    whole ledger first and every ``reconcile_full_interval_s``, what changed since the last clean run
    between (``Scope``): a run costs what changed, not what the ledger has grown to."""
    scope = Scope(settings.reconcile_full_interval_s)

    async def step() -> bool:
        since = scope.next(time.monotonic())
        report = await reconcile(db, settings.reconcile_stuck_after_s, since=since)
        scope.ran(report, time.monotonic())
        metrics.record_reconciliation(report)
        return False

    return Periodic("reconcile", step, settings.reconcile_interval_s)


def disputes_job(db: Database, settings: Settings) -> Periodic:
    """Every ``disputes_measure_interval_s``: how many disputes are open and how old the oldest is."""

    async def step() -> bool:
        found = await waiting(db)
        age = (datetime.now(UTC) - found.oldest_created_at).total_seconds() if found.oldest_created_at else 0.0
        metrics.record_disputes_waiting(found.open, age)
        return False

    return Periodic("disputes", step, settings.disputes_measure_interval_s, first_after_s=1.0)


def lapse_job(db: Database, settings: Settings) -> Periodic:
    """Every ``lapse_interval_s``, the first soon after start (a worker that was down catches up): lapse
    every lot past its last good day, then warn riders of what lapses within 30 days."""

    async def step() -> bool:
        lapses, points = await lapse_due(db, settings)
        warnings = await warn_riders(db, settings)
        metrics.record_lapses(lapses, points, warnings, await overdue(db))
        return warnings >= PAGE  # a full page of warnings: more may wait

    return Periodic("lapse", step, settings.lapse_interval_s, first_after_s=5.0)
