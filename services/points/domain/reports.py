"""The points report (积分台账): which Asia/Shanghai days it covers, which ledger entries each column sums,
and its rows as a table. Pure: services/points/reports.py reads the sums.

The columns, by the entry's recorded time:
- awarded: the amounts of ``award`` entries (a clipped award of 0 points adds 0);
- adjusted: the amounts of ``adjustment`` entries, signed (a deduction is negative);
- redeemed: the points confirmed redemptions consumed (``redeem`` entries move them from the rider's held
  account to the partner's), counted positive; holds, releases and expired holds move nothing for good;
- lapsed: the points taken away by ``lapse`` entries (积分有效期), counted positive, under the category of
  the award whose lot lapsed;
- events: the scored events, one per ``award`` entry with an event id (the ledger keeps one award per
  event, ``award:{source}:{event_id}``), zero-point awards included: the event was scored, and capped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from libs.i18n.reasons import term
from libs.platform.errors import DomainError
from libs.platform.tables import Column, Table

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_DAYS = 366
FIRST_YEAR, LAST_YEAR = 2000, 2099  # the programme's dates; a year 9999 has no day after it
NO_CATEGORY = "none"  # adjustments carry no category

# Which entry kinds each column sums: the one place a new kind is added.
KINDS: Mapping[Literal["awarded", "adjusted", "redeemed", "lapsed"], tuple[str, ...]] = {
    "awarded": ("award",),
    "adjusted": ("adjustment",),
    "redeemed": ("redeem",),
    "lapsed": ("lapse",),
}


class By(StrEnum):
    CATEGORY = "category"
    RIDER = "rider"
    DAY = "day"


KEY_HEADERS: Mapping[By, str] = {By.CATEGORY: "类别", By.RIDER: "骑手", By.DAY: "日期"}
SUM_COLUMNS = (
    Column("awarded", "奖励积分"),
    Column("adjusted", "调整积分"),
    Column("redeemed", "兑换积分"),
    Column("lapsed", "过期积分"),
    Column("events", "事件数"),
)


@dataclass(frozen=True, slots=True)
class Period:
    """Whole Asia/Shanghai days, ``first`` and ``last`` included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time(), SHANGHAI)

    @property
    def end(self) -> datetime:
        """The first moment after the period: midnight after ``last``."""
        return datetime.combine(self.last + timedelta(days=1), datetime.min.time(), SHANGHAI)

    def name(self) -> str:
        """For a file name: ``2026-11`` for a whole calendar month, else ``2026-11-03_2026-11-09``."""
        whole_month = self.first.day == 1 and (self.last + timedelta(days=1)).day == 1
        if whole_month and (self.first.year, self.first.month) == (self.last.year, self.last.month):
            return self.first.strftime("%Y-%m")
        return f"{self.first.isoformat()}_{self.last.isoformat()}"


def period_of(first: str, last: str) -> Period:
    """The period ``from`` to ``to`` (YYYY-MM-DD), refused with the field and the fix."""
    start, end = _day("from", first), _day("to", last)
    if start > end:
        raise DomainError(f"from: {first} is after to ({last}); swap them", kind="invalid-request")
    if (end - start).days + 1 > MAX_DAYS:
        raise DomainError(
            f"to: {first} to {last} is {(end - start).days + 1} days; ask for at most {MAX_DAYS}",
            kind="invalid-request",
        )
    return Period(start, end)


def _day(name: str, value: str) -> date:
    try:
        day = date.fromisoformat(value) if len(value) == 10 and value.isascii() else None
    except ValueError:
        day = None
    if day is None:
        raise DomainError(f"{name}: {value[:40]!r} is not a date; send YYYY-MM-DD", kind="invalid-request")
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise DomainError(
            f"{name}: {value} is outside the years {FIRST_YEAR} to {LAST_YEAR}; send a date in them",
            kind="invalid-request",
        )
    return day


@dataclass(frozen=True, slots=True)
class PointsRow:
    key: str
    awarded: int
    adjusted: int
    redeemed: int
    lapsed: int
    events: int


def points_table(by: By, rows: Sequence[PointsRow]) -> Table:
    """The rows as the ledger's table; by category, the category's Chinese name beside its key."""
    key = Column("key", KEY_HEADERS[by], "text")
    if by is By.CATEGORY:
        columns = (key, Column("name", "类别名称", "text"), *SUM_COLUMNS)
        return Table(columns, [(r.key, category_name(r.key), *_sums(r)) for r in rows])
    return Table((key, *SUM_COLUMNS), [(r.key, *_sums(r)) for r in rows])


def _sums(r: PointsRow) -> tuple[int, int, int, int, int]:
    return (r.awarded, r.adjusted, r.redeemed, r.lapsed, r.events)


def category_name(key: str) -> str:
    if key == NO_CATEGORY:
        return "未分类"
    if key == "redemption":
        return "兑换"
    return term("category", key, "zh")


def filename(period: Period, by: By) -> str:
    return f"points-{period.name()}-by-{by.value}"


def page_after(by: By, cursor: str | None) -> str | None:
    """The key a page starts after; by day it must be a day (the next_cursor of a page by day is one)."""
    if cursor is not None and by is By.DAY:
        _day("cursor", cursor)
    return cursor
