"""A partner's settlement: the month's confirmed redemptions, by confirmation time in Asia/Shanghai,
and what they add up to. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from libs.platform.tables import Column, Table
from services.redemption.domain.catalogue import Partner
from services.redemption.domain.holds import SHANGHAI


@dataclass(frozen=True, slots=True)
class SettlementLine:
    redemption_id: str
    reward_id: str
    title: str
    points: int
    confirmed_at: datetime


@dataclass(frozen=True, slots=True)
class Settlement:
    partner_id: str
    month: str
    lines: tuple[SettlementLine, ...]

    @property
    def redemptions(self) -> int:
        return len(self.lines)

    @property
    def points_total(self) -> int:
        return sum(line.points for line in self.lines)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The first moment of ``month`` (YYYY-MM) in Asia/Shanghai and the first of the month after."""
    year, number = (int(x) for x in month.split("-"))
    start = datetime(year, number, 1, tzinfo=SHANGHAI)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


def settlement_of(partner_id: str, month: str, lines: Sequence[SettlementLine]) -> Settlement:
    return Settlement(partner_id, month, tuple(lines))


# The sub-district's settlement sheet (结算表): one row per partner, every partner filed, zeros included.
SETTLEMENT_COLUMNS = (
    Column("partner_id", "商户编号", "text"),
    Column("name", "商户名称", "text"),
    Column("kind", "类型", "text"),
    Column("month", "月份", "text"),
    Column("redemptions", "兑换笔数"),
    Column("points_total", "结算积分"),
)
KIND_NAMES = {"merchant": "商家", "hospital": "医院", "barber": "快剪"}


def settlement_table(partners: Sequence[Partner], settlements: Sequence[Settlement]) -> Table:
    """Each partner's settlement as a row, ``partners`` and ``settlements`` in the same order."""
    return Table(
        SETTLEMENT_COLUMNS,
        [
            (p.partner_id, p.name, KIND_NAMES.get(p.kind, p.kind), s.month, s.redemptions, s.points_total)
            for p, s in zip(partners, settlements, strict=True)
        ],
    )
