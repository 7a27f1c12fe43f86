"""What the rules of redemption refuse, each a ``DomainError`` whose kind names its problem in
``libs/platform/errors.py``; the detail says what to fix, naming the field. Nothing here knows HTTP."""

from __future__ import annotations

from datetime import datetime

from libs.i18n.problems import P_, says
from libs.platform.errors import DomainError


class Refused(DomainError):
    """A request the rules of redemption do not allow; nothing was changed."""


# --- the catalogue ---------------------------------------------------------------------------------


class PartnerExists(Refused):
    kind = "partner-exists"

    def __init__(self, partner_id: str) -> None:
        super().__init__(f"partner_id: {partner_id!r} exists with other details")


class PartnerUnknown(Refused):
    kind = "partner-unknown"

    def __init__(self, partner_id: str) -> None:
        super().__init__(f"partner_id: no partner {partner_id!r}; create it with POST /v1/partners")


class PartnerRequired(Refused):
    kind = "partner-required"

    def __init__(self) -> None:
        super().__init__("partner_id: an operator names the partner")


class RewardExists(Refused):
    kind = "reward-exists"

    def __init__(self, reward_id: str) -> None:
        super().__init__(f"reward_id: {reward_id!r} exists; change it with PUT /v1/rewards/{reward_id}")


class RewardUnknown(Refused):
    kind = "reward-unknown"

    def __init__(self, reward_id: str, *, to_reserve: bool = False) -> None:
        if to_reserve:
            super().__init__(
                says(P_("reward_id: no reward {reward_id!r}; pick one from GET /v1/rewards"), reward_id=reward_id)
            )
        else:
            super().__init__(says(P_("reward_id: no reward {reward_id!r}"), reward_id=reward_id))


class RewardInactive(Refused):
    kind = "reward-inactive"

    def __init__(self, reward_id: str) -> None:
        super().__init__(says(P_("reward_id: {reward_id!r} is not offered at the moment"), reward_id=reward_id))


class OutOfStock(Refused):
    kind = "out-of-stock"

    def __init__(self, title: str, stock_per_month: int | None, month: str) -> None:
        super().__init__(
            says(
                P_("reward_id: all {stock} of {title} for {month} are taken; try next month or another reward"),
                stock=stock_per_month,
                title=title,
                month=month,
            )
        )


class MonthlyLimitReached(Refused):
    kind = "monthly-limit-reached"

    def __init__(self, title: str, per_rider_monthly_limit: int | None, month: str) -> None:
        super().__init__(
            says(
                P_("reward_id: a rider may redeem {title} {limit} time(s) a month, and {month}'s are used"),
                title=title,
                limit=per_rider_monthly_limit,
                month=month,
            )
        )


# --- reserving -------------------------------------------------------------------------------------


class IdempotencyKeyReused(Refused):
    kind = "idempotency-key-reused"

    def __init__(self) -> None:
        super().__init__("Idempotency-Key: this key was used for another reward; use a new key per redemption")


class RedemptionUnknown(Refused):
    kind = "redemption-unknown"

    def __init__(self, redemption_id: str) -> None:
        super().__init__(says(P_("no redemption {redemption_id!r} of yours"), redemption_id=redemption_id))


# --- resolving a hold (check_resolution in holds.py decides which) ---------------------------------


class CodeExpired(Refused):
    kind = "code-expired"

    def __init__(self, expired_at: datetime | None = None) -> None:
        if expired_at is None:
            super().__init__(says(P_("code: this hold expired and its points were returned")))
        else:
            super().__init__(
                says(
                    P_("code: this hold expired at {expired_at}; the rider's points were returned"),
                    expired_at=expired_at.isoformat(),
                )
            )


class NotExpired(Refused):
    kind = "not-expired"

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"the hold runs until {expires_at.isoformat()}")


class AlreadyConfirmed(Refused):
    kind = "already-confirmed"

    def __init__(self) -> None:
        super().__init__(says(P_("code: this code was already used at the counter")))


class AlreadyCancelled(Refused):
    kind = "already-cancelled"

    def __init__(self) -> None:
        super().__init__(says(P_("the rider cancelled this redemption")))


# --- codes at the counter --------------------------------------------------------------------------


class InvalidCode(Refused):
    kind = "invalid-code"

    def __init__(self) -> None:
        super().__init__(says(P_("code: a code is 8 letters and digits, as shown on the rider's phone")))


class CodeUnknown(Refused):
    kind = "code-unknown"

    def __init__(self) -> None:
        super().__init__(
            says(
                P_(
                    "code: no live redemption of yours has this code; check it with the rider "
                    "(8 characters, no 0, O, 1, I or L)"
                )
            )
        )


class TooManyWrongCodes(Refused):
    """The partner's wrong codes in the window reached the limit: it waits ``retry_after_s`` seconds
    (carried as a value, and sent as the Retry-After header)."""

    kind = "too-many-wrong-codes"

    def __init__(self, limit: int, window_s: int, retry_after_s: int) -> None:
        super().__init__(
            says(
                P_(
                    "code: {limit} wrong codes within {minutes} minutes; try again in {seconds} seconds "
                    "and check the code with the rider"
                ),
                limit=limit,
                minutes=window_s // 60,
                seconds=retry_after_s,
            ),
            retry_after_s=retry_after_s,
        )
