"""Reconciliation on a schedule inside the points worker, its result exported as metrics."""

from __future__ import annotations

import asyncio
import time

import structlog
from prometheus_client import Gauge

from libs.platform.db import TRANSIENT, Database
from libs.platform.loops import LoopGuard, pause
from services.reconcile.handlers import reconcile

log = structlog.get_logger(__name__)

MISMATCHES = Gauge("warmbee_reconcile_mismatches", "Mismatches found by the last reconciliation (0: reconciled)")
LAST_RUN = Gauge("warmbee_reconcile_last_run_timestamp_seconds", "When reconciliation last finished (Unix time)")


class ReconcileLoop:
    def __init__(self, db: Database, interval_s: float, stuck_after_s: int) -> None:
        self._db = db
        self._interval_s = interval_s
        self._stuck_after_s = stuck_after_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        guard = LoopGuard("reconcile")
        while not self._stopping.is_set():
            await pause(self._stopping, self._interval_s)
            if self._stopping.is_set():
                return
            try:
                report = await reconcile(self._db, self._stuck_after_s)
            except Exception as exc:  # whatever it was, reconciliation runs again at its next turn
                guard.failed(exc, expected=isinstance(exc, TRANSIENT))
                continue
            guard.succeeded()
            MISMATCHES.set(report.mismatches)
            LAST_RUN.set(time.time())
            if not report.ok:
                log.error("reconcile.mismatch", mismatches=report.mismatches, report=report.lines())

    def stop(self) -> None:
        self._stopping.set()
