"""The catalogue: partners (merchants, hospitals, barbers) and the rewards they offer, with a monthly
stock and a per-rider monthly limit. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from services.redemption.domain.errors import MonthlyLimitReached, OutOfStock, Refused

PARTNER_KINDS = ("merchant", "hospital", "barber")


@dataclass(frozen=True, slots=True)
class Partner:
    partner_id: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Reward:
    reward_id: str
    partner_id: str
    title: str
    cost: int
    stock_per_month: int | None
    per_rider_monthly_limit: int | None
    active: bool


def limit_refusal(reward: Reward, month: str, *, stock_full: bool, rider_full: bool) -> Refused | None:
    """Why one more hold of ``reward`` in ``month`` is refused, given which counters had no room; the
    stock is named first (no other rider may have one either)."""
    if stock_full:
        return OutOfStock(reward.title, reward.stock_per_month, month)
    if rider_full:
        return MonthlyLimitReached(reward.title, reward.per_rider_monthly_limit, month)
    return None
