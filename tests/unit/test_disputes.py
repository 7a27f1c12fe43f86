"""The dispute's states and moves, without a database (services/points/domain/disputes.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, rider_available
from libs.ledger.model import EntryKind
from libs.platform.errors import DomainError
from services.points.domain.disputes import (
    SOURCE,
    Dispute,
    DisputeOpen,
    DisputeResolved,
    Outcome,
    Resolution,
    Status,
    dispute_event,
    is_retry,
    may_open,
    may_resolve,
    new_dispute_id,
    opening_hash,
    upheld_adjustment,
)

AT = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
OPEN = Dispute("dsp_" + "a" * 32, 41, "rider-7", "我做了三个小时", Status.OPEN, AT, "k1")
RESOLVED = replace(
    OPEN,
    status=Status.RESOLVED,
    outcome=Outcome.UPHELD,
    amount=15,
    reply="核实为三小时",
    resolved_by="ops-1",
    resolve_key="r1",
    resolved_at=AT,
    adjustment_entry_id=99,
)


def test_an_upheld_resolution_needs_an_amount_other_than_zero() -> None:
    for amount in (None, 0):
        with pytest.raises(DomainError) as refused:
            Resolution(Outcome.UPHELD, amount, "ok")
        assert refused.value.kind == "invalid-request"
        assert "amount" in refused.value.detail
    assert Resolution(Outcome.UPHELD, -3, "ok").amount == -3


def test_a_rejected_resolution_moves_no_points() -> None:
    assert Resolution(Outcome.REJECTED, None, "记录无误").amount is None
    with pytest.raises(DomainError, match="amount"):
        Resolution(Outcome.REJECTED, 5, "no")


def test_one_open_dispute_per_entry() -> None:
    may_open(None, 41)
    with pytest.raises(DisputeOpen) as refused:
        may_open(OPEN, 41)
    assert refused.value.extra["dispute_id"] == OPEN.dispute_id


def test_a_dispute_is_resolved_once_and_the_refusal_says_the_outcome_in_the_readers_language() -> None:
    may_resolve(OPEN)
    for outcome, english, chinese in (
        (Outcome.UPHELD, "upheld", "（成立）"),
        (Outcome.REJECTED, "rejected", "（不成立）"),
    ):
        with pytest.raises(DisputeResolved) as refused:
            may_resolve(replace(RESOLVED, outcome=outcome))
        assert (
            refused.value.detail
            == f"dispute {OPEN.dispute_id} was already {english} at {AT.isoformat()}; it is resolved only once"
        )
        assert refused.value.says is not None
        zh = refused.value.says.render("zh")
        assert chinese in zh
        assert english not in zh


def test_only_the_same_request_of_the_same_operator_is_a_retry() -> None:
    same = Resolution(Outcome.UPHELD, 15, "核实为三小时")
    assert is_retry(RESOLVED, "ops-1", "r1", same)
    assert not is_retry(RESOLVED, "ops-2", "r1", same)
    assert not is_retry(RESOLVED, "ops-1", "r2", same)
    assert not is_retry(RESOLVED, "ops-1", "r1", Resolution(Outcome.UPHELD, 16, "核实为三小时"))
    assert not is_retry(OPEN, "ops-1", "r1", same)


def test_the_adjustment_of_an_upheld_dispute_links_to_it_and_its_entry() -> None:
    credit = upheld_adjustment(OPEN, 15, "核实为三小时", "ops-1")
    assert credit.kind is EntryKind.ADJUSTMENT
    assert credit.available_delta == 15
    assert (credit.source, credit.event_id) == (SOURCE, OPEN.dispute_id)
    assert credit.details == {"dispute_id": OPEN.dispute_id, "disputed_entry_id": 41}
    assert credit.reason.code == "adjustment.dispute_upheld"
    assert OPEN.dispute_id in credit.reason.render("zh")
    assert "申诉" in credit.reason.render("zh")
    assert "dispute" in credit.reason.render("en")
    assert "核实为三小时" in credit.reason.render("en")
    debit = upheld_adjustment(OPEN, -4, "多记了", "ops-1")
    assert debit.available_delta == -4
    assert {p.account for p in debit.postings} == {PROGRAMME_ADJUSTMENTS, rider_available("rider-7")}
    assert credit.idempotency_key == debit.idempotency_key  # one adjustment per dispute, whatever the amount


def test_the_event_of_a_step_has_a_fixed_id() -> None:
    opened = dispute_event("dispute.opened", OPEN, AT)
    resolved = dispute_event("dispute.resolved", RESOLVED, AT)
    assert opened["id"] != resolved["id"]
    assert opened["id"] == dispute_event("dispute.opened", OPEN, AT)["id"]
    assert resolved["data"]["adjustment_entry_id"] == 99
    assert "idempotency_key" not in resolved["data"]
    assert opened["subject"] == "rider-7"


def test_ids_and_opening_hashes() -> None:
    assert new_dispute_id() != new_dispute_id()
    assert len(new_dispute_id()) == 36
    assert opening_hash(1, "a") != opening_hash(1, "b") != opening_hash(2, "a")
