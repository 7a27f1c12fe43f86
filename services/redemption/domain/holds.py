"""Redemption holds: the state machine, codes and money movements. Pure.

A reserve holds the cost (available -> held) and issues a code; the hold is resolved exactly once:
confirmed by the partner (held -> the partner's redeemed account), cancelled by the rider, or expired.
Each resolution is a new ledger entry with its own key; only a 'held' redemption may change.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from libs.i18n.reasons import Reason
from libs.ledger.keys import partner_redeemed, redemption_key, rider_available, rider_held
from libs.ledger.model import EntryKind, LedgerTransaction, transfer
from services.redemption.domain.catalogue import Reward
from services.redemption.domain.errors import (
    AlreadyCancelled,
    AlreadyConfirmed,
    CodeExpired,
    InvalidCode,
    NotExpired,
    Refused,
)

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
class Redemption:
    redemption_id: str
    reward_id: str
    partner_id: str
    rider_id: str
    title: str
    cost: int
    status: Status
    code: str
    month: str
    idempotency_key: str
    request_hash: str
    notice: str | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


@dataclass(frozen=True, slots=True)
class Changed:
    """A domain event: a redemption of a partner of ``kind`` reached the state it has now."""

    kind: str
    redemption: Redemption


def request_hash(reward_id: str) -> str:
    """What an Idempotency-Key was first used for: the same key for another reward is refused."""
    return hashlib.sha256(reward_id.encode()).hexdigest()


def new_hold(
    reward: Reward, rider_id: str, key: str, now: datetime, ttl: timedelta, expected_cost: int | None
) -> Redemption:
    """A new hold of ``reward`` for ``rider_id``; ``expected_cost`` (the price the rider saw), when it
    differs from the price now, becomes a notice saying so."""
    notice = None
    if expected_cost is not None and expected_cost != reward.cost:
        notice = (
            f"the price of {reward.title} is now {reward.cost} points (you saw {expected_cost}); "
            f"{reward.cost} points were held"
        )
    return Redemption(
        redemption_id=str(uuid.uuid4()),
        reward_id=reward.reward_id,
        partner_id=reward.partner_id,
        rider_id=rider_id,
        title=reward.title,
        cost=reward.cost,
        status=Status.HELD,
        code=new_code(),
        month=month_of(now),
        idempotency_key=key,
        request_hash=request_hash(reward.reward_id),
        notice=notice,
        created_at=now,
        expires_at=expiry(now, ttl),
        resolved_at=None,
        resolved_by=None,
    )


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What a partner types or scans: spaces, dashes, lower case and the QR prefix are forgiven."""
    cleaned = text.strip().upper().removeprefix(QR_PREFIX)
    return cleaned.replace(" ", "").replace("-", "")


def code_of(text: str) -> str:
    """The code a partner typed or scanned, normalised; refused (InvalidCode) when it cannot be one."""
    code = normalise_code(text)
    if not re.fullmatch(r"[A-Z0-9]{8}", code):
        raise InvalidCode()
    return code


def qr_payload(code: str) -> str:
    return f"{QR_PREFIX}{code}"


def month_of(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m")


def expiry(created_at: datetime, ttl: timedelta) -> datetime:
    return created_at + ttl


def check_resolution(status: Status, action: Resolution, expires_at: datetime, now: datetime) -> Refused | None:
    """Why ``action`` may not happen to a redemption in ``status`` at ``now``; None when it may."""
    if status is Status.HELD:
        if action is Resolution.CONFIRM and now >= expires_at:
            return CodeExpired(expires_at)
        if action is Resolution.EXPIRE and now < expires_at:
            return NotExpired(expires_at)
        return None
    if status is RESULT_OF[action] and action is not Resolution.CONFIRM:
        return None  # already done: the same cancel or expiry again changes nothing
    # A code pays once: confirming a confirmed code again is refused (already-confirmed), not replayed.
    match status:
        case Status.CONFIRMED:
            return AlreadyConfirmed()
        case Status.CANCELLED:
            return AlreadyCancelled()
        case _:
            return CodeExpired()


def hold_entry(
    redemption_id: str, rider_id: str, cost: int, title: str, partner_name: str, reward_id: str
) -> LedgerTransaction:
    return LedgerTransaction(
        idempotency_key=redemption_key(redemption_id, "hold"),
        kind=EntryKind.HOLD,
        rider_id=rider_id,
        reason=Reason.of("redemption.hold", cost=cost, title=title, partner_name=partner_name),
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
            code = "redemption.redeem"
        case Resolution.CANCEL:
            kind, destination = EntryKind.RELEASE, rider_available(rider_id)
            code = "redemption.release"
        case Resolution.EXPIRE:
            kind, destination = EntryKind.EXPIRE, rider_available(rider_id)
            code = "redemption.expire"
    return LedgerTransaction(
        idempotency_key=redemption_key(redemption_id, action.value),
        kind=kind,
        rider_id=rider_id,
        reason=Reason.of(code, title=title, cost=cost),
        postings=transfer(rider_held(rider_id), destination, cost),
        category="redemption",
        source="warmbee/redemption",
        event_id=redemption_id,
        actor=actor,
        settles=redemption_key(redemption_id, "hold"),  # its points go back to, or are paid from, the hold's lots
    )
