"""Disputes (申诉): a rider questions one of its entries, an operator resolves it once. Pure, no I/O.

A dispute is ``open`` until an operator resolves it, then ``resolved`` for good, with an outcome:
``upheld`` (an adjustment of ``amount`` points, linked to the dispute and to the disputed entry) or
``rejected`` (a reply, no points). The points service's use cases (services/points/disputes.py) keep
these states in PostgreSQL; this module says which moves are allowed and what each one records.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from libs.i18n.problems import P_, says
from libs.i18n.reasons import Reason
from libs.ledger.keys import PROGRAMME_ADJUSTMENTS, dispute_key, rider_available
from libs.ledger.model import EntryKind, LedgerTransaction, transfer
from libs.platform.errors import DomainError

SOURCE = "warmbee/disputes"  # the adjustment's source; its event_id is the dispute id
MESSAGE_MAX = 1000  # characters, as a reader counts them (a 2,000-character essay is refused)
MAX_AMOUNT = 1_000_000


class Status(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Outcome(StrEnum):
    UPHELD = "upheld"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Dispute:
    dispute_id: str
    entry_id: int
    rider_id: str
    message: str
    status: Status
    created_at: datetime
    idempotency_key: str
    outcome: Outcome | None = None
    amount: int | None = None
    reply: str | None = None
    resolved_by: str | None = None
    resolve_key: str | None = None
    resolved_at: datetime | None = None
    adjustment_entry_id: int | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an operator decided: upheld with a non-zero amount, or rejected; a reply either way."""

    outcome: Outcome
    amount: int | None
    reply: str

    def __post_init__(self) -> None:
        if self.outcome is Outcome.UPHELD and not self.amount:
            raise DomainError(
                says(P_("amount: an upheld dispute needs the points to adjust, a whole number other than 0")),
                kind="invalid-request",
                title=P_("Invalid resolution"),
            )
        if self.outcome is Outcome.REJECTED and self.amount:
            raise DomainError(
                says(P_("amount: a rejected dispute moves no points; leave amount out, or uphold it")),
                kind="invalid-request",
                title=P_("Invalid resolution"),
            )


class DisputeOpen(DomainError):
    kind = "dispute-open"


class DisputeResolved(DomainError):
    kind = "dispute-resolved"


def new_dispute_id() -> str:
    return f"dsp_{uuid.uuid4().hex}"


def opening_hash(entry_id: int, message: str) -> str:
    """What an opening says, so the same Idempotency-Key with another entry or message is caught."""
    return hashlib.sha256(orjson.dumps([entry_id, message])).hexdigest()


def may_open(existing_open: Dispute | None, entry_id: int) -> None:
    """One open dispute per entry: a second is refused while the first waits."""
    if existing_open is not None:
        raise DisputeOpen(
            says(
                P_("entry_id: entry {entry_id} already has an open dispute ({dispute_id}); wait for its answer"),
                entry_id=entry_id,
                dispute_id=existing_open.dispute_id,
            ),
            dispute_id=existing_open.dispute_id,
        )


def is_retry(dispute: Dispute, operator: str, resolve_key: str, resolution: Resolution) -> bool:
    """The same operator's same resolution sent again (its answer was lost): the dispute as it is."""
    return (
        dispute.status is Status.RESOLVED
        and dispute.resolved_by == operator
        and dispute.resolve_key == resolve_key
        and dispute.outcome is resolution.outcome
        and dispute.amount == resolution.amount
        and dispute.reply == resolution.reply
    )


def may_resolve(dispute: Dispute) -> None:
    """A dispute is resolved once: a second resolution, whoever sends it, is refused."""
    if dispute.status is Status.RESOLVED:
        # One sentence per outcome, so the reader's language says the outcome too, not only the frame.
        sentence = (
            P_("dispute {dispute_id} was already upheld at {at}; it is resolved only once")
            if dispute.outcome is Outcome.UPHELD
            else P_("dispute {dispute_id} was already rejected at {at}; it is resolved only once")
        )
        at = dispute.resolved_at.isoformat() if dispute.resolved_at else ""
        raise DisputeResolved(says(sentence, dispute_id=dispute.dispute_id, at=at))


def upheld_adjustment(dispute: Dispute, amount: int, reply: str, operator: str) -> LedgerTransaction:
    """The adjustment an upheld dispute posts: its reason names the dispute and the disputed entry, in the
    reader's language; the entry links back by its source and event id (the dispute) and its details."""
    source, destination = PROGRAMME_ADJUSTMENTS, rider_available(dispute.rider_id)
    if amount < 0:
        source, destination = destination, source
    return LedgerTransaction(
        idempotency_key=dispute_key(dispute.dispute_id),
        kind=EntryKind.ADJUSTMENT,
        rider_id=dispute.rider_id,
        reason=Reason.of(
            "adjustment.dispute_upheld", dispute_id=dispute.dispute_id, entry_id=dispute.entry_id, note=reply
        ),
        postings=transfer(source, destination, abs(amount)),
        source=SOURCE,
        event_id=dispute.dispute_id,
        actor=operator,
        details={"dispute_id": dispute.dispute_id, "disputed_entry_id": dispute.entry_id},
    )


def dispute_event(kind: str, dispute: Dispute, at: datetime) -> dict[str, Any]:
    """The ``points-ledger`` CloudEvent of a dispute opened or resolved (``dispute.opened``,
    ``dispute.resolved``): its id is fixed by the dispute and the step, so a relay's retry is the same event."""
    step = "opened" if kind == "dispute.opened" else "resolved"
    return {
        "specversion": "1.0",
        "id": f"{dispute.dispute_id}-{step}",
        "source": "warmbee/points",
        "type": kind,
        "subject": dispute.rider_id,
        "time": at,
        "datacontenttype": "application/json",
        "data": public_fields(dispute),
    }


def public_fields(dispute: Dispute) -> Mapping[str, Any]:
    """What the API and the events say of a dispute (not the idempotency keys)."""
    return {
        "dispute_id": dispute.dispute_id,
        "entry_id": dispute.entry_id,
        "rider_id": dispute.rider_id,
        "status": dispute.status.value,
        "message": dispute.message,
        "created_at": dispute.created_at,
        "outcome": dispute.outcome.value if dispute.outcome else None,
        "amount": dispute.amount,
        "reply": dispute.reply,
        "resolved_by": dispute.resolved_by,
        "resolved_at": dispute.resolved_at,
        "adjustment_entry_id": dispute.adjustment_entry_id,
    }
