"""Every background job of every service: when it first runs, how often, with what jitter, what it does
after a failure, what it exports; and ``Background``, which starts and stops a process's jobs and loops.

A job is one ``step`` run again and again. A step that returns True found more work than it did (a full
page), so it runs again at once; otherwise the next run comes after ``interval_s``, give or take
``jitter`` (replicas drift apart instead of running in step). An error the step did not expect is logged,
counted and retried after a growing pause (``LoopGuard``), never longer than the interval: a job never
ends but with its process, or the work it does (expiring holds, scoring what Kafka did not bring,
reconciling) would stop unnoticed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

import structlog

from libs.platform.db import TRANSIENT
from libs.platform.loops import LoopGuard, pause
from libs.platform.metrics import JOB_LAST_SUCCESS, JOB_RUNS, JOB_SECONDS

log = structlog.get_logger(__name__)


Step = Callable[[], Awaitable[bool | None]]


class Runnable(Protocol):
    """What ``Background`` runs: a job, a consumer, a relay."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Periodic:
    """One background job. ``first_after_s``: the wait before the first run (None: one interval; 0: at
    once, for work that piled up while the process was down). ``expected``: errors that pass by themselves
    (a database away), logged without a traceback and not counted as failures of the loop."""

    def __init__(
        self,
        name: str,
        step: Step,
        interval_s: float,
        *,
        first_after_s: float | None = None,
        jitter: float = 0.1,
        expected: tuple[type[BaseException], ...] = TRANSIENT,
    ) -> None:
        self.name = name
        self._step = step
        self._interval_s = interval_s
        self._first_after_s = interval_s if first_after_s is None else first_after_s
        self._jitter = jitter
        self._expected = expected
        self._guard = LoopGuard(name)
        self._retry_in_s = 0.0
        self.stopping = asyncio.Event()
        for outcome in ("ok", "failed"):  # every series from the start, so rates and alerts see 0
            JOB_RUNS.labels(name, outcome)

    async def run(self) -> None:
        await pause(self.stopping, self._first_after_s)
        while not self.stopping.is_set():
            more = await self.run_once()
            if more is None:  # it failed: the pause grows while failures go on, at most one interval
                await pause(self.stopping, min(self._retry_in_s, self._interval_s))
            elif not more:
                spread = random.uniform(-self._jitter, self._jitter)  # noqa: S311  (timing, not secrets)
                await pause(self.stopping, self._interval_s * (1 + spread))

    async def run_once(self) -> bool | None:
        """One run: True when more work waits, False when done, None when it failed (logged and counted)."""
        started = time.perf_counter()
        try:
            more = await self._step()
        except Exception as exc:  # any error at all: log, count, back off, go on
            self._retry_in_s = self._guard.failed(exc, expected=isinstance(exc, self._expected))
            JOB_RUNS.labels(self.name, "failed").inc()
            return None
        finally:
            JOB_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        self._guard.succeeded()
        JOB_RUNS.labels(self.name, "ok").inc()
        JOB_LAST_SUCCESS.labels(self.name).set(time.time())
        return bool(more)

    def stop(self) -> None:
        self.stopping.set()


class Background:
    """The jobs and loops of one process, started together and stopped together: ``async with`` in an
    app's lifespan, or ``await run()`` in a worker until ``stop()``."""

    def __init__(self, *parts: Runnable) -> None:
        self._parts = parts
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        await asyncio.gather(*(part.run() for part in self._parts))

    def stop(self) -> None:
        for part in self._parts:
            part.stop()

    async def __aenter__(self) -> Background:
        self._tasks = [asyncio.create_task(part.run(), name=type(part).__name__) for part in self._parts]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        await asyncio.gather(*self._tasks)
