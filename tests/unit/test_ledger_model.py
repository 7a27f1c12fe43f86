"""The ledger's pure core: postings, transfers, transactions and what they do to balances."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, PROGRAMME_ISSUED, rider_available, rider_held, rider_of
from libs.ledger.model import (
    EntryKind,
    LedgerError,
    LedgerTransaction,
    Posting,
    RiderDelta,
    rider_delta,
    transfer,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2024, 5, 1, 9, 0, tzinfo=SHANGHAI)

NOTE = Reason.of("adjustment", note="reason")


# --- factories -------------------------------------------------------------------------------------


def per_rider(txs: list[LedgerTransaction]) -> dict[str, RiderDelta]:
    """Each rider's balance change over ``txs``: the sum of each transaction's ``rider_delta``."""
    out: dict[str, RiderDelta] = {}
    for tx in txs:
        out[tx.rider_id] = out.get(tx.rider_id, RiderDelta()) + rider_delta(tx)
    return out


def per_account(txs: list[LedgerTransaction]) -> dict[str, int]:
    """Each account's change over ``txs`` (the sum of its postings), leaving out those that net to zero."""
    out: dict[str, int] = {}
    for tx in txs:
        for p in tx.postings:
            out[p.account] = out.get(p.account, 0) + p.amount
    return {account: amount for account, amount in out.items() if amount != 0}


def award(points: int = 25, rider: str = "rider-1", event_id: str = "e1") -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=f"award:volunteer-platform:{event_id}",
        kind=EntryKind.AWARD,
        rider_id=rider,
        reason=Reason.of("legacy.text", text=f"volunteer shift: {points} points"),
        postings=transfer(PROGRAMME_ISSUED, rider_available(rider), points),
        category="volunteer_service",
        source="volunteer-platform",
        event_id=event_id,
        rule_id="warmbee-default",
        rule_version=1,
        occurred_at=AT,
    )


def adjustment(amount: int, rider: str = "rider-1", key: str = "adj-1") -> LedgerTransaction:
    postings = (
        transfer(PROGRAMME_ADJUSTMENTS, rider_available(rider), amount)
        if amount >= 0
        else transfer(rider_available(rider), PROGRAMME_ADJUSTMENTS, -amount)
    )
    return LedgerTransaction(
        idempotency_key=f"adjustment:{key}",
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider,
        reason=Reason.of("legacy.text", text="operator correction"),
        postings=postings,
        actor="operator-1",
    )


def hold(cost: int, rider: str = "rider-1", redemption: str = "r1") -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=f"hold:{redemption}",
        kind=EntryKind.HOLD,
        rider_id=rider,
        reason=Reason.of("legacy.text", text="reserved a haircut"),
        postings=transfer(rider_available(rider), rider_held(rider), cost),
    )


def release(
    cost: int, rider: str = "rider-1", redemption: str = "r1", kind: EntryKind = EntryKind.RELEASE
) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=f"{kind.value}:{redemption}",
        kind=kind,
        rider_id=rider,
        reason=Reason.of("legacy.text", text="hold given back"),
        postings=transfer(rider_held(rider), rider_available(rider), cost),
    )


def redeem(cost: int, rider: str = "rider-1", redemption: str = "r1") -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=f"redeem:{redemption}",
        kind=EntryKind.REDEEM,
        rider_id=rider,
        reason=Reason.of("legacy.text", text="confirmed at the barber"),
        postings=transfer(rider_held(rider), "partner:barber-7:redeemed", cost),
    )


# --- accounts --------------------------------------------------------------------------------------


def test_rider_accounts_are_addressed_by_rider_id_and_bucket():
    assert rider_available("rider-1") == "rider:rider-1:available"
    assert rider_held("rider-1") == "rider:rider-1:held"


def test_rider_of_recovers_a_rider_id_that_contains_colons():
    assert rider_of("rider:team:7:held") == "team:7"


def test_rider_of_a_programme_account_is_none():
    assert rider_of(PROGRAMME_ISSUED) is None


# --- postings and transfers ------------------------------------------------------------------------


def test_transfer_debits_the_source_and_credits_the_destination():
    assert transfer(PROGRAMME_ISSUED, "rider:rider-1:available", 25) == (
        Posting(PROGRAMME_ISSUED, -25),
        Posting("rider:rider-1:available", 25),
    )


def test_transfer_of_zero_points_has_no_postings():
    assert transfer(PROGRAMME_ISSUED, "rider:rider-1:available", 0) == ()


def test_transfer_of_a_negative_amount_is_refused():
    with pytest.raises(LedgerError, match="never negative"):
        transfer(PROGRAMME_ISSUED, "rider:rider-1:available", -5)


def test_a_posting_of_zero_is_refused():
    with pytest.raises(LedgerError, match="0"):
        Posting("rider:rider-1:available", 0)


@pytest.mark.parametrize("amount", [2.5, 5.0, True, "5"])
def test_a_posting_amount_must_be_an_integer(amount):
    with pytest.raises(LedgerError, match="integer"):
        Posting("rider:rider-1:available", amount)


@pytest.mark.parametrize(
    "account",
    ["", "Rider:rider-1:available", "rider:rider 1:available", "rider::available", "rider:", "programme:issued\n"],
)
def test_a_malformed_account_address_is_refused(account):
    with pytest.raises(LedgerError, match="malformed account"):
        Posting(account, 5)


@pytest.mark.parametrize(
    "account", [PROGRAMME_ISSUED, "rider:rider-1:available", "rider:team:7:held", "partner:barber-7:redeemed"]
)
def test_well_formed_account_addresses_are_accepted(account):
    assert Posting(account, 5).account == account


# --- transactions ----------------------------------------------------------------------------------


def test_a_transaction_whose_postings_do_not_sum_to_zero_is_refused():
    with pytest.raises(LedgerError, match="sum to 5"):
        replace(award(), postings=(Posting(rider_available("rider-1"), 5),))


def test_an_award_of_zero_points_is_recorded_without_postings():
    entry = award(points=0)
    assert entry.postings == ()
    assert entry.available_delta == 0


def test_a_transaction_needs_an_idempotency_key():
    with pytest.raises(LedgerError, match="idempotency key"):
        replace(award(), idempotency_key="")


def test_a_transaction_needs_a_reason():
    with pytest.raises(LedgerError, match="reason"):
        replace(award(), reason="volunteer shift")  # type: ignore[arg-type]  # a text, no code


@pytest.mark.parametrize("rider_id", ["", "rider 1", "rider/1", "r" * 65, "rider-42\n"])
def test_a_malformed_rider_id_is_refused(rider_id):
    with pytest.raises(LedgerError, match="rider id"):
        LedgerTransaction("k", EntryKind.ADJUSTMENT, rider_id, NOTE)


@pytest.mark.parametrize("rider_id", ["rider-1", "team:7", "a.b_c-d", "r" * 64])
def test_rider_ids_of_1_to_64_allowed_characters_are_accepted(rider_id):
    assert LedgerTransaction("k", EntryKind.ADJUSTMENT, rider_id, NOTE).rider_id == rider_id


def test_a_naive_occurred_at_is_refused():
    with pytest.raises(LedgerError, match="timezone-aware"):
        replace(award(), occurred_at=datetime(2024, 5, 1, 9, 0))


def test_an_aware_occurred_at_is_accepted():
    assert replace(award(), occurred_at=datetime(2024, 5, 1, 1, 0, tzinfo=UTC)).occurred_at is not None


# --- available_delta -------------------------------------------------------------------------------


def test_an_award_adds_to_available():
    assert award(points=25).available_delta == 25


def test_a_negative_adjustment_takes_from_available():
    assert adjustment(-10).available_delta == -10


def test_a_hold_takes_its_cost_from_available():
    assert hold(cost=30).available_delta == -30


@pytest.mark.parametrize("kind", [EntryKind.RELEASE, EntryKind.EXPIRE])
def test_a_release_or_expiry_gives_the_cost_back_to_available(kind):
    assert release(cost=30, kind=kind).available_delta == 30


def test_a_redeem_leaves_available_unchanged():
    assert redeem(cost=30).available_delta == 0


# --- input_hash ------------------------------------------------------------------------------------


def test_input_hash_is_the_same_for_the_same_inputs():
    assert award().input_hash == award().input_hash


def test_input_hash_does_not_depend_on_posting_order():
    entry = award(points=25)
    assert replace(entry, postings=tuple(reversed(entry.postings))).input_hash == entry.input_hash


@pytest.mark.parametrize(
    "change",
    [
        {"kind": EntryKind.ADJUSTMENT},
        {"rider_id": "rider-2", "postings": transfer(PROGRAMME_ISSUED, "rider:rider-2:available", 25)},
        {"postings": transfer(PROGRAMME_ISSUED, "rider:rider-1:available", 26)},
        {"category": "civic_practice"},
        {"source": "grid-office"},
        {"event_id": "e2"},
        {"rule_id": "warmbee-special"},
        {"rule_version": 2},
    ],
    ids=lambda change: "+".join(change),
)
def test_input_hash_differs_when_an_input_differs(change):
    assert replace(award(), **change).input_hash != award().input_hash


# --- rider deltas ----------------------------------------------------------------------------------


def test_an_award_counts_as_earned():
    assert rider_delta(award(points=25)) == RiderDelta(available=25, held=0, earned=25, redeemed=0)


def test_a_positive_adjustment_counts_as_earned():
    assert rider_delta(adjustment(15)) == RiderDelta(available=15, held=0, earned=15, redeemed=0)


def test_a_hold_moves_points_from_available_to_held():
    assert rider_delta(hold(cost=30)) == RiderDelta(available=-30, held=30, earned=0, redeemed=0)


def test_a_release_moves_points_from_held_back_to_available():
    assert rider_delta(release(cost=30)) == RiderDelta(available=30, held=-30, earned=0, redeemed=0)


def test_a_redeem_moves_held_points_to_redeemed():
    assert rider_delta(redeem(cost=30)) == RiderDelta(available=0, held=-30, earned=0, redeemed=30)


def test_rider_deltas_are_kept_per_rider():
    deltas = per_rider([award(25, rider="rider-1"), award(10, rider="rider-2", event_id="e2"), hold(20)])
    assert deltas == {
        "rider-1": RiderDelta(available=5, held=20, earned=25, redeemed=0),
        "rider-2": RiderDelta(available=10, held=0, earned=10, redeemed=0),
    }


def test_a_full_redemption_cycle_leaves_earned_minus_redeemed_available():
    deltas = per_rider([award(50), hold(30), redeem(30)])
    assert deltas["rider-1"] == RiderDelta(available=20, held=0, earned=50, redeemed=30)


def test_account_deltas_leave_out_accounts_that_net_to_zero():
    assert per_account([award(25), hold(30), release(30)]) == {
        PROGRAMME_ISSUED: -25,
        "rider:rider-1:available": 25,
    }


# --- properties ------------------------------------------------------------------------------------

# A small pool, so that entries of the same rider meet in one batch.
rider_ids = st.sampled_from(["rider-1", "rider-2", "team:7", "a.b_c-d"])
amounts = st.integers(min_value=0, max_value=10_000)


@st.composite
def transactions(draw: st.DrawFn) -> LedgerTransaction:
    rider = draw(rider_ids)
    amount = draw(amounts)
    n = draw(st.integers(min_value=0, max_value=1_000_000))
    make = draw(
        st.sampled_from(
            [
                lambda: award(amount, rider=rider, event_id=f"e{n}"),
                lambda: adjustment(amount, rider=rider, key=str(n)),
                lambda: adjustment(-amount, rider=rider, key=str(n)),
                lambda: hold(amount, rider=rider, redemption=f"r{n}"),
                lambda: release(amount, rider=rider, redemption=f"r{n}"),
                lambda: release(amount, rider=rider, redemption=f"r{n}", kind=EntryKind.EXPIRE),
                lambda: redeem(amount, rider=rider, redemption=f"r{n}"),
            ]
        )
    )
    return make()


accounts = st.sampled_from([PROGRAMME_ISSUED, PROGRAMME_ADJUSTMENTS, "rider:rider-1:available", "rider:x:held"])


@given(st.lists(st.tuples(accounts, accounts, amounts)))
def test_any_list_of_transfers_sums_to_zero(moves):
    postings = [p for source, destination, amount in moves for p in transfer(source, destination, amount)]
    assert sum(p.amount for p in postings) == 0


@given(st.lists(st.tuples(accounts, accounts, amounts)))
def test_any_list_of_transfers_makes_a_valid_transaction(moves):
    postings = tuple(p for source, destination, amount in moves for p in transfer(source, destination, amount))
    entry = LedgerTransaction("k", EntryKind.ADJUSTMENT, "rider-1", NOTE, postings)
    assert entry.postings == postings


@given(st.lists(transactions(), max_size=30), st.lists(transactions(), max_size=30))
def test_rider_deltas_of_two_batches_add_up(first, second):
    together = per_rider(first + second)
    apart_first, apart_second = per_rider(first), per_rider(second)
    for rider in together.keys() | apart_first.keys() | apart_second.keys():
        assert together.get(rider, RiderDelta()) == apart_first.get(rider, RiderDelta()) + apart_second.get(
            rider, RiderDelta()
        )


@given(st.lists(transactions(), max_size=30))
def test_account_deltas_of_balanced_transactions_sum_to_zero(txs):
    assert sum(per_account(txs).values()) == 0


@given(st.lists(transactions(), max_size=30))
def test_account_deltas_agree_with_rider_deltas_on_available_and_held(txs):
    by_account = per_account(txs)
    for rider, delta in per_rider(txs).items():
        assert by_account.get(rider_available(rider), 0) == delta.available
        assert by_account.get(rider_held(rider), 0) == delta.held


@given(st.lists(transactions(), max_size=30))
def test_available_deltas_sum_to_the_available_balance_change(txs):
    totals: dict[str, int] = {}
    for tx in txs:
        totals[tx.rider_id] = totals.get(tx.rider_id, 0) + tx.available_delta
    assert totals == {rider: delta.available for rider, delta in per_rider(txs).items()}
