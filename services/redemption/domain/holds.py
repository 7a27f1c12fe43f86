"""Redemption holds: the state machine, codes and money movements. Pure.

A reserve holds the cost (available -> held) and issues a code; the hold is resolved exactly once:
confirmed by the partner (held -> the partner's redeemed account), cancelled by the rider, or expired.
Each resolution is a new ledger entry with its own key; only a 'held' redemption may change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from libs.ledger.keys import partner_redeemed, redemption_key, rider_available, rider_held
from libs.ledger.model import EntryKind, LedgerTransaction, transfer

# No look-alikes: no 0/O, 1/I/L. 31 symbols, 8 of them: about 8.5e11 codes.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
QR_PREFIX = "WARMBEE1:"
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Status(StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Resolution(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    EXPIRE = "expire"


RESULT_OF: dict[Resolution, Status] = {
    Resolution.CONFIRM: Status.CONFIRMED,
    Resolution.CANCEL: Status.CANCELLED,
    Resolution.EXPIRE: Status.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    slug: str
    title: str
    detail: str


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What a partner types or scans: spaces, dashes, lower case and the QR prefix are forgiven."""
    cleaned = text.strip().upper().removeprefix(QR_PREFIX)
    return cleaned.replace(" ", "").replace("-", "")


def qr_payload(code: str) -> str:
    return f"{QR_PREFIX}{code}"


def month_of(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m")


def expiry(created_at: datetime, ttl: timedelta) -> datetime:
    return created_at + ttl


def check_resolution(status: Status, action: Resolution, expires_at: datetime, now: datetime) -> Refusal | None:
    """Why ``action`` may not happen to a redemption in ``status`` at ``now``; None when it may."""
    if status is Status.HELD:
        if action is Resolution.CONFIRM and now >= expires_at:
            return Refusal(
                "code-expired",
                "Code expired",
                f"code: this hold expired at {expires_at.isoformat()}; the rider's points were returned",
            )
        if action is Resolution.EXPIRE and now < expires_at:
            return Refusal("not-expired", "Not expired yet", f"the hold runs until {expires_at.isoformat()}")
        return None
    if status is RESULT_OF[action] and action is not Resolution.CONFIRM:
        return None  # already done: the same cancel or expiry again changes nothing
    # A code pays once: confirming a confirmed code again is refused (already-confirmed), not replayed.
    words = {
        Status.CONFIRMED: ("already-confirmed", "Already confirmed", "code: this code was already used at the counter"),
        Status.CANCELLED: ("already-cancelled", "Already cancelled", "the rider cancelled this redemption"),
        Status.EXPIRED: ("code-expired", "Code expired", "code: this hold expired and its points were returned"),
    }[status]
    return Refusal(*words)


def hold_entry(
    redemption_id: str, rider_id: str, cost: int, title: str, partner_name: str, reward_id: str
) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=redemption_key(redemption_id, "hold"),
        kind=EntryKind.HOLD,
        rider_id=rider_id,
        reason=f"{cost} points held for {title} at {partner_name}",
        postings=transfer(rider_available(rider_id), rider_held(rider_id), cost),
        category="redemption",
        source="warmbee/redemption",
        event_id=redemption_id,
        details={"reward_id": reward_id},
    )


def resolution_entry(
    redemption_id: str, rider_id: str, cost: int, title: str, partner_id: str, action: Resolution, actor: str | None
) -> LedgerTransaction:
    match action:
        case Resolution.CONFIRM:
            kind, destination = EntryKind.REDEEM, partner_redeemed(partner_id)
            reason = f"{title} redeemed at the counter: the {cost} held points were paid"
        case Resolution.CANCEL:
            kind, destination = EntryKind.RELEASE, rider_available(rider_id)
            reason = f"redemption of {title} cancelled: {cost} points returned"
        case Resolution.EXPIRE:
            kind, destination = EntryKind.EXPIRE, rider_available(rider_id)
            reason = f"the hold for {title} expired unconfirmed: {cost} points returned"
    return LedgerTransaction(
        idempotency_key=redemption_key(redemption_id, action.value),
        kind=kind,
        rider_id=rider_id,
        reason=reason,
        postings=transfer(rider_held(rider_id), destination, cost),
        category="redemption",
        source="warmbee/redemption",
        event_id=redemption_id,
        actor=actor,
    )
