"""Lots, pure: allocation takes soonest-lapsing first and never more than a lot has free; a hold's
release gives back exactly what it took; a lapse takes what is left, never held points; the rules' lapse
policies fix a lot's last good day in the programme's time zone."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ISSUED, PROGRAMME_LAPSED, rider_available, rider_held
from libs.ledger.lot_store import DueLot
from libs.ledger.lots import Lot, LotBook, allocate, needs_lots
from libs.ledger.model import EntryKind, LedgerError, LedgerTransaction, LotTerms, Posting, transfer
from services.points.domain.lapsing import lapse_entry, today
from services.points.domain.rules import LapsePolicy, Rules
from tests.unit.rules_factories import default_document, default_rules

RIDER = "rider:7"
NOTE = Reason.of("adjustment", note="n")

lots_strategy = st.lists(
    st.builds(
        Lot,
        lot_id=st.integers(1, 10_000),
        rider_id=st.just(RIDER),
        lapses_on=st.dates(date(2026, 1, 1), date(2028, 12, 31)),
        remaining=st.integers(0, 500),
    ),
    max_size=12,
    unique_by=lambda lot: lot.lot_id,
)


def award_postings(amount: int) -> tuple[Posting, ...]:
    return transfer(PROGRAMME_ISSUED, rider_available(RIDER), amount)


def hold(amount: int, key: str = "redemption:r1:hold") -> LedgerTransaction:
    return LedgerTransaction(
        key, EntryKind.HOLD, RIDER, NOTE, transfer(rider_available(RIDER), rider_held(RIDER), amount)
    )


def settle(kind: EntryKind, amount: int, hold_key: str = "redemption:r1:hold") -> LedgerTransaction:
    destination = "partner:p1:redeemed" if kind is EntryKind.REDEEM else rider_available(RIDER)
    return LedgerTransaction(
        f"{hold_key}:{kind.value}",
        kind,
        RIDER,
        NOTE,
        transfer(rider_held(RIDER), destination, amount),
        settles=hold_key,
    )


@given(lots_strategy, st.integers(0, 8_000))
def test_allocation_takes_soonest_first_and_never_more_than_a_lot_has(lots: list[Lot], amount: int) -> None:
    takes = allocate(lots, amount)
    by_id = {lot.lot_id: lot for lot in lots}
    assert all(0 < n <= by_id[lot_id].free for lot_id, n in takes)
    assert sum(n for _, n in takes) == min(amount, sum(lot.free for lot in lots))
    order = sorted(lots, key=lambda lot: (lot.lapses_on, lot.lot_id))
    taken = [lot for lot in order if lot.lot_id in dict(takes)]
    if taken:  # every lot lapsing before the last one taken was emptied first
        last = order.index(taken[-1])
        assert all(dict(takes).get(lot.lot_id, 0) == lot.free for lot in order[:last])


@given(lots_strategy, st.integers(1, 3_000), st.sampled_from([EntryKind.RELEASE, EntryKind.EXPIRE]))
def test_a_release_gives_back_to_the_lots_exactly_what_the_hold_took(
    lots: list[Lot], amount: int, kind: EntryKind
) -> None:
    before = copy.deepcopy({lot.lot_id: lot for lot in lots})
    book = LotBook({lot.lot_id: lot for lot in lots}, {})
    book.apply(hold(amount), 1)
    assert sum(lot.held for lot in book.lots.values()) == min(amount, sum(lot.free for lot in before.values()))
    book.apply(settle(kind, amount), 2)
    assert book.lots == before
    taken = [(lot, n) for tx, lot, n in book.links if tx == 1]
    given_back = [(lot, n) for tx, lot, n in book.links if tx == 2]
    assert sorted(taken) == sorted(given_back)


@given(lots_strategy, st.integers(1, 3_000))
def test_a_confirmation_pays_the_held_points_from_the_lots_they_were_held_in(lots: list[Lot], amount: int) -> None:
    before = copy.deepcopy({lot.lot_id: lot for lot in lots})
    book = LotBook({lot.lot_id: lot for lot in lots}, {})
    book.apply(hold(amount), 1)
    book.apply(settle(EntryKind.REDEEM, amount), 2)
    paid = {lot: n for tx, lot, n in book.links if tx == 2}
    for lot_id, lot in book.lots.items():
        assert lot.held == 0
        assert lot.remaining == before[lot_id].remaining - paid.get(lot_id, 0)


def test_a_negative_adjustment_takes_from_the_lot_that_lapses_first() -> None:
    soon, late = Lot(1, RIDER, date(2027, 1, 31), 10), Lot(2, RIDER, date(2026, 12, 31), 5)
    book = LotBook({1: soon, 2: late}, {})
    minus = LedgerTransaction(
        "adjustment:ops:k", EntryKind.ADJUSTMENT, RIDER, NOTE, transfer(rider_available(RIDER), "programme:adj", 8)
    )
    book.apply(minus, 9)
    assert (late.remaining, soon.remaining) == (0, 7)
    assert book.links == [(9, 2, 5), (9, 1, 3)]


def test_a_lapse_takes_what_is_left_and_never_held_points() -> None:
    lot = Lot(4, RIDER, date(2026, 11, 30), 30, held=10)
    book = LotBook({4: lot}, {})
    due = DueLot(4, RIDER, 30, date(2025, 11, 3), date(2026, 11, 30))
    with pytest.raises(LedgerError, match="none of it held"):
        book.apply(lapse_entry(due), 5)
    lot.held = 0
    book.apply(lapse_entry(due), 5)
    assert (lot.remaining, book.lapsed, book.links) == (0, {4: 5}, [(5, 4, 30)])
    with pytest.raises(LedgerError):  # nothing is left to lapse twice
        book.apply(lapse_entry(due), 6)


def test_a_lapse_entry_names_its_lot_and_award_and_moves_points_to_the_programme() -> None:
    entry = lapse_entry(DueLot(12, RIDER, 30, date(2026, 12, 3), date(2027, 12, 31)))
    assert entry.idempotency_key == "lapse:12"
    assert entry.kind is EntryKind.LAPSE
    assert entry.lot_id == 12
    assert entry.available_delta == -30
    assert {p.account for p in entry.postings} == {rider_available(RIDER), PROGRAMME_LAPSED}
    assert entry.reason.render("zh") == "第 12 条记录（2026年12月3日获得）剩余 30 分，有效期至 2027年12月31日，已过期"
    assert entry.reason.render("en") == "30 points of entry 12 (awarded on 2026-12-03) lapsed after 2027-12-31"


def test_only_a_credit_opens_a_lot_and_only_a_lapse_names_one() -> None:
    terms = LotTerms(date(2026, 12, 3), date(2027, 12, 31))
    with pytest.raises(LedgerError, match="only a credit"):
        LedgerTransaction("k", EntryKind.HOLD, RIDER, NOTE, hold(5).postings, lot=terms)
    with pytest.raises(LedgerError, match="names the lot"):
        LedgerTransaction(
            "k", EntryKind.AWARD, RIDER, NOTE, transfer(PROGRAMME_ISSUED, rider_available(RIDER), 5), lot_id=3
        )
    with pytest.raises(LedgerError, match="before it is awarded"):
        LotTerms(date(2027, 1, 1), date(2026, 12, 31))
    assert needs_lots(hold(1))
    assert not needs_lots(LedgerTransaction("a", EntryKind.AWARD, RIDER, NOTE, award_postings(5)))


@pytest.mark.parametrize(
    ("policy", "awarded_on", "lapses_on"),
    [
        ({"after_months": 12}, date(2026, 12, 3), date(2027, 12, 31)),
        ({"after_months": 12}, date(2026, 12, 31), date(2027, 12, 31)),
        ({"after_months": 1}, date(2026, 1, 31), date(2026, 2, 28)),
        ({"after_months": 1}, date(2027, 1, 1), date(2027, 2, 28)),
        ({"after_months": 13}, date(2027, 1, 15), date(2028, 2, 29)),
        ({"end_of_year_after": 1}, date(2026, 1, 1), date(2027, 12, 31)),
        ({"end_of_year_after": 0}, date(2026, 12, 31), date(2026, 12, 31)),
        ({"after_months": 120}, date(9995, 6, 1), date.max),  # past the calendar: never sooner than the end of it
    ],
)
def test_a_policy_fixes_the_last_good_day(policy: dict[str, int], awarded_on: date, lapses_on: date) -> None:
    assert LapsePolicy.model_validate(policy).lapses_on(awarded_on) == lapses_on


@given(st.dates(date(2000, 1, 1), date(9000, 1, 1)), st.integers(1, 120))
def test_a_lot_is_good_at_least_to_the_end_of_its_month_and_to_a_months_end(day: date, months: int) -> None:
    last = LapsePolicy(after_months=months).lapses_on(day)
    assert last > day
    assert (last + timedelta(days=1)).day == 1


@pytest.mark.parametrize(
    "policy",
    [{}, {"after_months": 12, "end_of_year_after": 1}, {"after_months": 0}, {"end_of_year_after": -1}, {"x": 1}],
)
def test_a_policy_says_exactly_one_thing(policy: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LapsePolicy.model_validate(policy)


def test_the_version_in_force_at_the_award_fixes_its_lot_in_the_rules_time_zone() -> None:
    assert default_rules().lot_terms(datetime(2026, 12, 3, tzinfo=UTC)) is None  # version 1 lapses nothing
    rules = Rules.model_validate({**default_document(), "lapse": {"after_months": 12}})
    # 2026-12-31 17:00 UTC is already 1 January 2027 in Shanghai: the award's month is January.
    terms = rules.lot_terms(datetime(2026, 12, 31, 17, 0, tzinfo=UTC))
    assert terms == LotTerms(date(2027, 1, 1), date(2028, 1, 31))
    assert today(datetime(2026, 12, 31, 17, 0, tzinfo=UTC)) == date(2027, 1, 1)
