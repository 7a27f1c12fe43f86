"""Rules: a versioned document of per-category parameters, and the pure scoring function.

``score(event, counters, rules)`` decides what one event earns from the event, the rider's
counters for the periods it falls in, and the rules in force at the event's time. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.activity.model import ActivityEvent

Period = Literal["day", "week", "month", "year"]
PERIOD_WORDS: Mapping[str, str] = {"day": "daily", "week": "weekly", "month": "monthly", "year": "yearly"}


class Caps(BaseModel):
    """Most points a rider earns in one category per calendar period (absent: no cap)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    day: int | None = Field(default=None, gt=0)
    week: int | None = Field(default=None, gt=0)
    month: int | None = Field(default=None, gt=0)
    year: int | None = Field(default=None, gt=0)

    def items(self) -> list[tuple[Period, int]]:
        periods: tuple[Period, ...] = ("day", "week", "month", "year")
        return [(p, v) for p in periods if (v := getattr(self, p)) is not None]


class VolunteerServiceRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    points_per_hour: int = Field(gt=0)
    counted_in_minutes: int = Field(default=30, gt=0, le=60)
    caps: Caps = Caps()

    @model_validator(mode="after")
    def _whole_points_per_unit(self) -> VolunteerServiceRule:
        if (self.points_per_hour * self.counted_in_minutes) % 60:
            raise ValueError(
                "points_per_hour × counted_in_minutes must be a multiple of 60 so each unit earns whole points"
            )
        return self

    @property
    def points_per_unit(self) -> int:
        return self.points_per_hour * self.counted_in_minutes // 60


class CategoryRules(BaseModel):
    """Parameters per category; a category left out has no rules yet and its events stay pending."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    volunteer_service: VolunteerServiceRule | None = None


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules_id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(gt=0)
    effective_from: AwareDatetime
    timezone: str = "Asia/Shanghai"
    description: str | None = None
    categories: CategoryRules

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class RuleBook:
    """Every published version; an event is scored by the version in force at its time."""

    def __init__(self, versions: Sequence[Rules]) -> None:
        self._versions = sorted(versions, key=lambda r: (r.effective_from, r.version))

    def in_force_at(self, when: datetime) -> Rules | None:
        current = None
        for rules in self._versions:
            if rules.effective_from <= when:
                current = rules
            else:
                break
        return current

    @property
    def versions(self) -> Sequence[Rules]:
        return tuple(self._versions)


@dataclass(frozen=True, slots=True)
class Score:
    category: str
    points: int
    reason: str
    rule_id: str | None
    rule_version: int | None
    counters: Mapping[str, int] = field(default_factory=dict)  # increments to apply


def counter_key(category: str, period: Period, local: datetime) -> str:
    match period:
        case "day":
            label = local.strftime("%Y-%m-%d")
        case "week":
            iso = local.isocalendar()
            label = f"{iso.year}-W{iso.week:02d}"
        case "month":
            label = local.strftime("%Y-%m")
        case "year":
            label = local.strftime("%Y")
    return f"{category}:{period}:{label}"


def counters_needed(event: ActivityEvent, book: RuleBook) -> list[str]:
    """The counter keys ``score`` will read for this event, so the caller can load them first."""
    rules = book.in_force_at(event.time)
    if rules is None:
        return []
    rule = getattr(rules.categories, event.category, None)
    if rule is None:
        return []
    local = event.time.astimezone(rules.zone)
    return [counter_key(event.category, period, local) for period, _ in rule.caps.items()]


def score(event: ActivityEvent, counters: Mapping[str, int], book: RuleBook) -> Score | None:
    """What the event earns; None when its category has no rules yet (the event stays pending)."""
    rules = book.in_force_at(event.time)
    if rules is None:
        return Score(event.category, 0, "no rules were in force at the time of this activity", None, None)
    if event.category == "volunteer_service" and rules.categories.volunteer_service is not None:
        return _volunteer_service(event, counters, rules, rules.categories.volunteer_service)
    return None


def _volunteer_service(
    event: ActivityEvent, counters: Mapping[str, int], rules: Rules, rule: VolunteerServiceRule
) -> Score:
    hours = Decimal(repr(event.data["hours"]))
    units = int(hours * 60 // rule.counted_in_minutes)
    unit_name = "half-hour" if rule.counted_in_minutes == 30 else f"{rule.counted_in_minutes}-minute unit"
    base = units * rule.points_per_unit
    if units == 0:
        reason = f"{_fmt(hours)} verified hours is less than one whole {unit_name}: 0 points"
        return Score(event.category, 0, reason, rules.rules_id, rules.version)
    plural = "" if units == 1 else "s"
    earned = f"{_fmt(hours)} verified hours = {units} whole {unit_name}{plural} × {rule.points_per_unit} points"
    return _capped(event, counters, rules, rule.caps, base, earned)


def _capped(
    event: ActivityEvent, counters: Mapping[str, int], rules: Rules, caps: Caps, base: int, earned: str
) -> Score:
    """Clip ``base`` to what is left below every cap; the smallest remainder wins and is named."""
    local = event.time.astimezone(rules.zone)
    points, binding = base, None
    keys = {}
    for period, cap in caps.items():
        key = counter_key(event.category, period, local)
        keys[key] = period
        left = max(cap - counters.get(key, 0), 0)
        if left < points:
            points, binding = left, (period, cap)
    label = event.category.replace("_", " ")
    if binding is None:
        reason = f"{earned} = {base} points"
    else:
        period, cap = binding
        state = "already reached" if points == 0 else "reached"
        reason = f"{PERIOD_WORDS[period]} cap of {cap} points for {label} {state}: {points} of {base} awarded"
    increments = {key: points for key in keys} if points else {}
    return Score(event.category, points, reason, rules.rules_id, rules.version, increments)


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")
