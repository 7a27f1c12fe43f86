"""What every background loop does after an error it did not expect: log it, count it, back off, go on.

A loop that ends its process on one unexpected error stops a whole part of the programme (scoring,
relaying, expiring holds) until someone notices; a supervisor restarting the process meets the same
error again. So each loop catches what it did not foresee at the top of one step, and ``LoopGuard``
says how long to wait before the next step, growing while the failures go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from libs.platform.db import caused_by_data
from libs.platform.metrics import LOOP_FAILURES

T = TypeVar("T")

log = structlog.get_logger(__name__)


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
        delay = min(self._base_s * 2.0 ** (self.failures - 1), self._cap_s)
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


async def write_isolating(
    items: Sequence[T],
    write: Callable[[Sequence[T]], Awaitable[None]],
    set_aside: Callable[[T, Exception], Awaitable[None]],
) -> None:
    """``write`` the items (one transaction); if that fails for a reason in their data (``caused_by_data``),
    write each half on its own, down to the one item that fails, which is ``set_aside`` alone. One bad item
    costs about 2·log2(n) more transactions; every other item is written, in order. Any other failure is
    raised: it passes (a lost connection) or is not the items' fault (a missing table), so the caller retries."""
    try:
        await write(items)
        return
    except Exception as exc:
        if not caused_by_data(exc):
            raise
        if len(items) == 1:
            log.error("write.item_set_aside", error=repr(exc)[:500])
            await set_aside(items[0], exc)
            return
        log.warning("write.batch_split", items=len(items), error=repr(exc)[:500])
    half = len(items) // 2
    await write_isolating(items[:half], write, set_aside)
    await write_isolating(items[half:], write, set_aside)
