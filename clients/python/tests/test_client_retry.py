"""The retry policy and budget of the publishing client, without a network."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from warmbee_client.retry import RETRYABLE_STATUSES, RetryBudget, RetryPolicy, parse_retry_after


def test_retry_after_in_seconds_is_read() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0


def test_retry_after_as_an_http_date_is_the_time_left_until_it() -> None:
    now = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 03 Dec 2026 07:00:05 GMT", now) == 5.0
    assert parse_retry_after("Thu, 03 Dec 2026 06:59:00 GMT", now) == 0.0  # already past: at once


def test_retry_after_missing_or_unreadable_is_none() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None


def test_the_servers_retry_after_is_the_pause() -> None:
    assert RetryPolicy().delay(1, 2.5, random.Random(1)) == 2.5


def test_a_retry_after_beyond_the_limit_gives_up_instead_of_waiting() -> None:
    assert RetryPolicy(max_retry_after_s=60).delay(1, 3600, random.Random(1)) is None


def test_backoff_is_full_jitter_under_a_doubling_ceiling_capped() -> None:
    policy = RetryPolicy(attempts=20, base_s=0.2, cap_s=10.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (7, 10.0), (12, 10.0)]:
        pauses = [policy.delay(retry, None, rng) for _ in range(500)]
        assert all(p is not None and 0 <= p <= ceiling for p in pauses)
        assert max(p for p in pauses if p is not None) > ceiling * 0.9  # it reaches the ceiling: jitter is full
        assert min(p for p in pauses if p is not None) < ceiling * 0.1


def test_attempts_include_the_first_try() -> None:
    policy = RetryPolicy(attempts=3)
    rng = random.Random(1)
    assert policy.delay(1, None, rng) is not None
    assert policy.delay(2, None, rng) is not None
    assert policy.delay(3, None, rng) is None  # a fourth request would be a third retry


def test_only_answers_that_mean_later_are_retried() -> None:
    assert {429, 503} <= RETRYABLE_STATUSES
    assert not {400, 401, 403, 404, 409, 413, 415, 422} & RETRYABLE_STATUSES


def test_the_budget_allows_its_floor_then_a_share_of_requests() -> None:
    budget = RetryBudget(ratio=0.1, floor=2)
    assert [budget.try_spend(), budget.try_spend()] == [True, True]
    assert not budget.try_spend()  # floor spent, no request earned anything yet
    for _ in range(10):
        budget.record_request()
    assert budget.try_spend()  # 10 requests earned one retry
    assert not budget.try_spend()
    assert budget.spent == 3
