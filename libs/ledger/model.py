"""The ledger's pure core: accounts, postings, transactions and what they do to balances.

Amounts are integer points. A transaction's postings sum to zero; a rider's accounts
(``rider:{id}:available``, ``rider:{id}:held``) may never go below zero, the programme's may.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

import orjson

from libs.i18n.reasons import Reason
from libs.ledger.keys import rider_available, rider_held

# Rider accounts carry the rider id as the contract allows it (colons included); others are plain paths.
ACCOUNT_PATTERN = re.compile(
    r"^(rider:[A-Za-z0-9_.:\-]{1,64}:(available|held)|(programme|partner)(:[A-Za-z0-9_.\-]+)+)$"
)
RIDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class EntryKind(StrEnum):
    AWARD = "award"
    ADJUSTMENT = "adjustment"
    HOLD = "hold"
    RELEASE = "release"
    REDEEM = "redeem"
    EXPIRE = "expire"
    LAPSE = "lapse"


class LedgerError(Exception):
    """A transaction that the ledger refuses to record."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: int  # signed: positive increases the account's balance

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise LedgerError(f"posting amount must be an integer, got {self.amount!r}")
        if self.amount == 0:
            raise LedgerError("a posting of 0 moves nothing; leave it out")
        if not ACCOUNT_PATTERN.fullmatch(self.account):  # fullmatch: "$" would let a trailing newline by
            raise LedgerError(f"malformed account address {self.account!r}")


def transfer(source: str, destination: str, amount: int) -> tuple[Posting, ...]:
    """Move ``amount`` points from ``source`` to ``destination``; nothing when amount is 0."""
    if amount < 0:
        raise LedgerError("a transfer amount is never negative; swap source and destination")
    if amount == 0:
        return ()
    return (Posting(source, -amount), Posting(destination, amount))


@dataclass(frozen=True, slots=True)
class LotTerms:
    """What a credit's lot is fixed with at its award: the day of the award and its last good day."""

    awarded_on: date
    lapses_on: date

    def __post_init__(self) -> None:
        if self.lapses_on < self.awarded_on:
            raise LedgerError(f"a lot cannot lapse ({self.lapses_on}) before it is awarded ({self.awarded_on})")


@dataclass(frozen=True, slots=True)
class LedgerTransaction:
    """One immutable entry. ``idempotency_key`` identifies it forever (``award:{source}:{event_id}``)."""

    idempotency_key: str
    kind: EntryKind
    rider_id: str
    reason: Reason  # stored as its code, its values and its English sentence
    postings: tuple[Posting, ...] = ()
    category: str | None = None
    source: str | None = None
    event_id: str | None = None
    rule_id: str | None = None
    rule_version: int | None = None
    occurred_at: datetime | None = None
    actor: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    lot: LotTerms | None = None  # a credit under a lapse policy: it opens a lot on these terms
    settles: str | None = None  # a release, expiry or confirmation: the idempotency key of its hold
    lot_id: int | None = None  # a lapse: the lot it lapses

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise LedgerError("a transaction needs an idempotency key")
        if not RIDER_ID_PATTERN.fullmatch(self.rider_id):
            raise LedgerError(f"malformed rider id {self.rider_id!r}")
        if not isinstance(self.reason, Reason):
            raise LedgerError("every entry carries a reason: a code and its values")
        total = sum(p.amount for p in self.postings)
        if total != 0:
            raise LedgerError(f"postings of {self.idempotency_key} sum to {total}, not 0")
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise LedgerError("occurred_at must be timezone-aware")
        if self.lot is not None and self.available_delta <= 0:
            raise LedgerError(f"only a credit opens a lot ({self.idempotency_key})")
        if (self.kind is EntryKind.LAPSE) != (self.lot_id is not None):
            raise LedgerError(f"a lapse, and only a lapse, names the lot it lapses ({self.idempotency_key})")

    @property
    def available_delta(self) -> int:
        """How this entry changes the rider's available balance (what the history shows)."""
        account = rider_available(self.rider_id)
        return sum(p.amount for p in self.postings if p.account == account)

    @property
    def input_hash(self) -> str:
        """A digest of what the entry says, so a reused key with other inputs is caught."""
        body = {
            "kind": self.kind.value,
            "rider_id": self.rider_id,
            "postings": sorted((p.account, p.amount) for p in self.postings),
            "category": self.category,
            "source": self.source,
            "event_id": self.event_id,
            "rule": [self.rule_id, self.rule_version],
        }
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class RiderDelta:
    """What a batch of entries does to one rider's balance projection."""

    available: int = 0
    held: int = 0
    earned: int = 0
    redeemed: int = 0

    def __add__(self, other: RiderDelta) -> RiderDelta:
        return RiderDelta(
            self.available + other.available,
            self.held + other.held,
            self.earned + other.earned,
            self.redeemed + other.redeemed,
        )


def rider_delta(tx: LedgerTransaction) -> RiderDelta:
    available = tx.available_delta
    held_account = rider_held(tx.rider_id)
    held = sum(p.amount for p in tx.postings if p.account == held_account)
    earned = available if tx.kind in (EntryKind.AWARD, EntryKind.ADJUSTMENT) else 0
    redeemed = -held if tx.kind is EntryKind.REDEEM else 0
    return RiderDelta(available, held, earned, redeemed)
