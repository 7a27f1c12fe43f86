"""What every background loop does after an error it did not expect: log it, count it, back off, go on.

A loop that ends its process on one unexpected error stops a whole part of the programme (scoring,
relaying, expiring holds) until someone notices; a supervisor restarting the process meets the same
error again. So each loop catches what it did not foresee at the top of one step, and ``LoopGuard``
says how long to wait before the next step, growing while the failures go on.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

LOOP_FAILURES = Counter(
    "warmbee_loop_failures_total",
    "Errors a background loop survived: logged, backed off, went on (loop: worker_lane, pending_sweep, "
    "reconcile, relay, expiry_sweep, ...)",
    ["loop"],
)


class LoopGuard:
    """One loop's failures in a row, and the pause before its next try (``base_s`` doubled per failure,
    at most ``cap_s``)."""

    def __init__(self, loop: str, base_s: float = 0.2, cap_s: float = 30.0) -> None:
        self.loop = loop
        self._base_s = base_s
        self._cap_s = cap_s
        self.failures = 0
        LOOP_FAILURES.labels(loop)  # the series exists from the start, so alerts see 0 rather than nothing

    def failed(self, exc: BaseException, expected: bool = False) -> float:
        """Count ``exc``; ``expected`` (a lost connection, a broker away) is logged without its traceback.
        Returns the seconds to wait before the next try."""
        self.failures += 1
        delay = min(self._base_s * 2 ** (self.failures - 1), self._cap_s)
        if expected:
            log.warning("loop.failed", loop=self.loop, error=repr(exc), failures=self.failures, retry_in_s=delay)
        else:
            LOOP_FAILURES.labels(self.loop).inc()
            log.error(
                "loop.failed", loop=self.loop, error=repr(exc), failures=self.failures, retry_in_s=delay, exc_info=exc
            )
        return delay

    def succeeded(self) -> None:
        self.failures = 0


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less when ``stopping`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
