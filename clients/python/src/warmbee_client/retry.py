"""When to try a request again, and how long to wait: pure, so the policy is tested without a network.

A retry sends the same body again, with the same event ids: the events service counts an event it already
holds as a duplicate, so a retry after a lost answer accepts nothing twice."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Answers that say "later", not "no": the service is shedding load (429) or a dependency is down (502-504).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110: delay-seconds or an HTTP-date), or None
    when there is none or it cannot be read."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with full jitter (so many sources that failed together do not come back
    together), a cap on each pause, and ``Retry-After`` obeyed when the server sends one (up to
    ``max_retry_after_s``: a server asking for an hour is a failure to report, not a pause)."""

    attempts: int = 6  # the first try included
    base_s: float = 0.2
    cap_s: float = 10.0
    max_retry_after_s: float = 120.0

    def delay(self, retry: int, retry_after_s: float | None, rng: random.Random) -> float | None:
        """The pause before retry number ``retry`` (1 for the first), or None: give up."""
        if retry >= self.attempts:
            return None
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        return rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (retry - 1)))


@dataclass(slots=True)
class RetryBudget:
    """Retries as a share of requests, across one client: when the service is down for everyone, a
    backlog of thousands of batches must not turn into thousands of retries each. Every request earns
    ``ratio`` of a retry; a retry spends one; ``floor`` retries are always there for a small run."""

    ratio: float = 0.2
    floor: int = 10
    _earned: float = field(default=0.0, init=False)
    _spent: int = field(default=0, init=False)

    def record_request(self) -> None:
        self._earned += self.ratio

    def try_spend(self) -> bool:
        if self._spent + 1 > self.floor + self._earned:
            return False
        self._spent += 1
        return True

    @property
    def spent(self) -> int:
        return self._spent
