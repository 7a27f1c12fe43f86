"""Which reconciliation the worker runs next (``Scope``): the whole ledger first and every
``full_every_s``, what changed since the last clean run between, and a run that found a mismatch looks
at the same again. And the time ``warmbee reconcile --since`` takes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import typer

from services.cli import _aware_time
from services.points.domain.reconcile import OVERLAP, Check, Report, Scope

AT = datetime(2026, 12, 3, 9, tzinfo=UTC)
CLEAN = [Check("every transaction's postings sum to zero", 3)]
MISMATCH = [Check("every transaction's postings sum to zero", 3, ["transaction 7 sums to 5"])]


def test_the_first_run_is_of_the_whole_ledger() -> None:
    assert Scope(86400).next(now=0.0) is None


def test_after_a_clean_run_the_next_looks_at_what_changed_since_it_less_the_overlap() -> None:
    scope = Scope(86400)
    scope.ran(Report(CLEAN, as_of=AT), now=0.0)
    assert scope.next(now=300.0) == AT - OVERLAP
    scope.ran(Report(CLEAN, as_of=AT + timedelta(minutes=5), since=AT - OVERLAP), now=300.0)
    assert scope.next(now=600.0) == AT + timedelta(minutes=5) - OVERLAP


def test_a_run_that_found_a_mismatch_leaves_the_scope_so_the_next_sees_it_again() -> None:
    scope = Scope(86400)
    scope.ran(Report(CLEAN, as_of=AT), now=0.0)
    scope.ran(Report(MISMATCH, as_of=AT + timedelta(minutes=5), since=AT - OVERLAP), now=300.0)
    assert scope.next(now=600.0) == AT - OVERLAP


def test_a_whole_run_that_found_a_mismatch_is_followed_by_another_whole_run() -> None:
    scope = Scope(86400)
    scope.ran(Report(MISMATCH, as_of=AT), now=0.0)
    assert scope.next(now=300.0) is None


def test_the_whole_ledger_again_once_full_every_s_has_passed_since_the_last_clean_whole_run() -> None:
    scope = Scope(3600)
    scope.ran(Report(CLEAN, as_of=AT), now=0.0)
    scope.ran(Report(CLEAN, as_of=AT + timedelta(minutes=30), since=AT - OVERLAP), now=1800.0)
    assert scope.next(now=3599.0) is not None
    assert scope.next(now=3600.0) is None


def test_a_report_says_what_it_looked_at() -> None:
    scoped = Report(CLEAN, as_of=AT, since=AT - OVERLAP).lines()
    assert scoped[0].startswith("what changed since 2026-12-03T08:50:00+00:00")
    assert not Report(CLEAN, as_of=AT).lines()[0].startswith("what changed")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-12-03 15:30", "has no time zone: add one, e.g. 2026-12-03 15:30+08:00"),
        ("yesterday", "is not an ISO 8601 time"),
        ("2026-12-03T15:30:00+08:00\x00", "is not an ISO 8601 time"),
        ("", "is not an ISO 8601 time"),
        ("9999-12-31T23:59:59-14:00", "is out of range"),
        ("0001-01-01T00:00:00+14:00", "is out of range"),
    ],
)
def test_reconcile_since_takes_a_time_with_its_zone_only(text: str, says: str) -> None:
    with pytest.raises(typer.BadParameter, match=re.escape(says)):
        _aware_time(text)


def test_reconcile_since_reads_an_iso_time_with_its_zone() -> None:
    assert _aware_time(" 2026-12-03T09:00:00+08:00\n") == datetime(2026, 12, 3, 1, tzinfo=UTC)
    assert _aware_time("2026-12-03T01:00:00Z") == datetime(2026, 12, 3, 1, tzinfo=UTC)
    assert _aware_time(None) is None
