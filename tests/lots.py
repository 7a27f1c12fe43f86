"""Credits that open lots (points that lapse), appended straight through the ledger package: a real entry
in the database the test uses, for tests of lots without a rules version that lapses."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, LotTerms, transfer


def lot_credit(
    rider_id: str, amount: int, lapses_on: date | None, awarded_on: date | None = None, note: str = "seed"
) -> LedgerTransaction:
    """A positive adjustment whose points are a lot good until ``lapses_on`` (None: in no lot, they never
    lapse), awarded on ``awarded_on`` (default: a year before its last day, or on it if that is sooner)."""
    terms = None
    if lapses_on is not None:
        terms = LotTerms(awarded_on or min(lapses_on, lapses_on - timedelta(days=365)), lapses_on)
    return LedgerTransaction(
        idempotency_key=f"adjustment:test-lots:{uuid.uuid4().hex}",
        kind=EntryKind.ADJUSTMENT,
        rider_id=rider_id,
        reason=Reason.of("adjustment", note=note),
        postings=transfer(PROGRAMME_ADJUSTMENTS, rider_available(rider_id), amount),
        actor="test",
        lot=terms,
    )
