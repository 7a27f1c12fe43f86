"""When a delivery that failed is tried again: the first retry within 10 s, then growing pauses, for at
least 24 h (API.md), then it is ``failed`` and waits for an operator's retry. Pure, no I/O."""

from __future__ import annotations

# Seconds to wait after the n-th failed attempt (1-based); the last pause repeats.
PAUSES_S: tuple[int, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800)


def next_pause_s(attempts: int) -> int:
    """The pause after ``attempts`` failed attempts."""
    return PAUSES_S[min(max(attempts, 1), len(PAUSES_S)) - 1]


def gives_up(first_attempt_age_s: float, retry_for_s: int) -> bool:
    """Whether a delivery first tried ``first_attempt_age_s`` ago has been retried for long enough."""
    return first_attempt_age_s >= retry_for_s
